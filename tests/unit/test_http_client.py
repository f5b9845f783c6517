"""lamplighter_client.HttpClient checks its arguments before sending anything, and never shows
its token."""
from datetime import datetime, timedelta, timezone

import pytest

from lamplighter_client import HttpClient, job_body

TOKEN = "llt_" + "A" * 43


def test_a_job_body_carries_the_options_given():
    body = job_body("maintenance.ping", [1], {"note": "hi"}, delay=timedelta(minutes=2), priority=3,
                    unique_key="k", unique_on_conflict="replace", tenant_id="acme", correlation_id="r-1")
    assert body == {"actor": "maintenance.ping", "args": [1], "kwargs": {"note": "hi"}, "delay": 120.0,
                    "priority": 3, "unique_key": "k", "unique_on_conflict": "replace", "tenant_id": "acme",
                    "correlation_id": "r-1"}
    eta = datetime(2030, 1, 1, 9, tzinfo=timezone.utc)
    assert job_body("maintenance.ping", eta=eta)["eta"] == "2030-01-01T09:00:00+00:00"


@pytest.mark.parametrize("call, error", [
    (lambda: job_body(""), TypeError),
    (lambda: job_body("a.b", [object()]), TypeError),
    (lambda: job_body("a.b", delay=5), TypeError),
    (lambda: job_body("a.b", delay=timedelta(seconds=-1)), ValueError),
    (lambda: job_body("a.b", eta=datetime(2030, 1, 1)), ValueError),
    (lambda: job_body("a.b", delay=timedelta(1), eta=datetime(2030, 1, 1, tzinfo=timezone.utc)), ValueError),
    (lambda: job_body("a.b", priority=True), TypeError),
    (lambda: job_body("a.b", queue=5), TypeError),
    (lambda: HttpClient("ftp://x", TOKEN), ValueError),
    (lambda: HttpClient("http://x", "secret"), ValueError),
])
def test_bad_arguments_are_refused_before_sending(call, error):
    with pytest.raises(error):
        call()


def test_the_token_is_not_in_the_clients_repr():
    assert TOKEN not in repr(HttpClient("http://127.0.0.1:8000/", TOKEN))
