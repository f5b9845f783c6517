"""No secret reaches a log line, whoever logs it (structlog or the standard library)."""
import io
import json
import logging
import re

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import logs
from tests.conftest import wait_for


def _capture():
    stream = io.StringIO()
    logs.configure(log_format="json", level="INFO", stream=stream)
    return stream


def test_secret_keys_and_embedded_secrets_are_redacted():
    stream = _capture()
    structlog.get_logger("t").info(
        "calling_idp", password="hunter2", zitadel_pat="pat-123", nested={"refresh_token": "rt-9", "ok": 1},
        url="postgresql://app:dbpass@db/x", header="Bearer abc.def.ghi")
    logging.getLogger("dramatiq").warning("connect postgresql://u:stdlibpass@h/d failed")
    text = stream.getvalue()
    for secret in ("hunter2", "pat-123", "rt-9", "dbpass", "abc.def.ghi", "stdlibpass"):
        assert secret not in text
    first = json.loads(text.splitlines()[0])
    assert first["password"] == logs.REDACTED
    assert first["nested"] == {"refresh_token": logs.REDACTED, "ok": 1}
    assert first["event"] == "calling_idp"


def test_one_json_object_per_line_off_a_terminal():
    stream = _capture()
    structlog.get_logger("t").info("job_completed", job_id="x", duration_ms=1.5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["level"] == "info" and event["job_id"] == "x" and "timestamp" in event


def test_the_running_jobs_fields_are_on_every_line_of_its_thread_and_gone_after():
    stream = _capture()
    logs.job_context.set({"job_id": "j-1", "actor": "reports.daily", "attempt": 2, "queue": "reports",
                          "tenant_id": "acme"})
    try:
        structlog.get_logger("domain").info("report_built", rows=3)
        logging.getLogger("dramatiq").warning("stdlib line inside the job")
        structlog.get_logger("domain").info("override", job_id="explicit")
    finally:
        logs.job_context.set(None)
    structlog.get_logger("domain").info("after_the_job")
    built, stdlib, explicit, after = (json.loads(line) for line in stream.getvalue().splitlines())
    for line in (built, stdlib):
        assert {k: line[k] for k in ("job_id", "actor", "attempt", "queue", "tenant_id")} == {
            "job_id": "j-1", "actor": "reports.daily", "attempt": 2, "queue": "reports", "tenant_id": "acme"}
    assert explicit["job_id"] == "explicit"  # what the event says wins
    assert "job_id" not in after and "actor" not in after


# ---- per-job lines (JobLogger): queued on the worker thread, written by the handler's writer


JOB = {"job_id": "j-7", "actor": "reports.daily", "attempt": 3, "queue": "reports", "tenant_id": "acme"}


@pytest.fixture
def held_writer(monkeypatch):
    """The writer thread waits an hour before it writes a batch: within a test, a queued line
    reaches the stream only when something flushes it."""
    monkeypatch.setattr(logs, "BATCH_INTERVAL_S", 3600)
    yield
    logs.configure(log_format="json", level="INFO", stream=io.StringIO())  # closes the held handler


@pytest.fixture
def job_running():
    logs.job_context.set(dict(JOB))
    yield
    logs.job_context.set(None)


def _events(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_per_job_line_is_the_line_the_structlog_path_writes(held_writer, job_running):
    stream = _capture()
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        structlog.get_logger("lamplighter.broker").info("job_completed", duration_ms=12.5)
        logs.JobLogger("lamplighter.broker").info("job_completed", duration_ms=12.5)
        structlog.get_logger("lamplighter.broker").warning(
            "job_failed_will_retry", duration_ms=3.0, error_type="ValueError", retry_in_ms=60_000)
        logs.JobLogger("lamplighter.broker").warning(
            "job_failed_will_retry", duration_ms=3.0, error_type="ValueError", retry_in_ms=60_000)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    logs.flush()
    plain_done, fast_done, plain_retry, fast_retry = _events(stream)
    for plain, fast in ((plain_done, fast_done), (plain_retry, fast_retry)):
        assert list(fast) == list(plain)  # same keys, in the same order
        assert {k: v for k, v in fast.items() if k != "timestamp"} == {
            k: v for k, v in plain.items() if k != "timestamp"}
        assert fast["timestamp"].endswith("Z") and len(fast["timestamp"]) == len(plain["timestamp"])
    assert {k: fast_retry[k] for k in JOB} == JOB and fast_retry["request_id"] == "r-1"
    assert fast_retry["level"] == "warning" and fast_done["level"] == "info"


def test_a_per_job_line_is_queued_and_redacted_when_written(held_writer):
    stream = _capture()
    logs.job_context.set({**JOB, "tenant_id": "postgresql://app:tenantpass@db/x"})
    try:
        logs.JobLogger("lamplighter.broker").warning(
            "job_dead", duration_ms=1.0, error_type="Bearer abc.def.ghi", api_key="k-123",
            detail={"refresh_token": "rt-9", "ok": 1})
    finally:
        logs.job_context.set(None)
    assert stream.getvalue() == ""  # queued for the writer, not written by the logging thread
    logs.flush()
    text = stream.getvalue()
    for secret in ("tenantpass", "abc.def.ghi", "k-123", "rt-9"):
        assert secret not in text
    (line,) = _events(stream)
    assert line["tenant_id"] == "postgresql://app:[REDACTED]@db/x"
    assert line["error_type"] == "Bearer [REDACTED]" and line["api_key"] == logs.REDACTED
    assert line["detail"] == {"refresh_token": logs.REDACTED, "ok": 1}


def test_per_job_lines_keep_their_place_among_the_other_lines(held_writer, job_running):
    stream = _capture()
    job_log = logs.JobLogger("lamplighter.broker")
    job_log.info("job_completed", duration_ms=1.0)
    structlog.get_logger("lamplighter.broker").info("worker_stopping")
    job_log.info("job_completed", duration_ms=2.0)
    logging.getLogger("dramatiq").warning("stdlib line")
    logs.flush()
    assert [(e["event"], e.get("duration_ms")) for e in _events(stream)] == [
        ("job_completed", 1.0), ("worker_stopping", None), ("job_completed", 2.0), ("stdlib line", None)]


def test_the_level_applies_to_per_job_lines(held_writer, job_running):
    stream = io.StringIO()
    logs.configure(log_format="json", level="WARNING", stream=stream)
    job_log = logs.JobLogger("lamplighter.broker")
    job_log.debug("job_started")
    job_log.info("job_completed", duration_ms=1.0)
    job_log.warning("job_dead", duration_ms=1.0, error_type="KeyError", retry_in_ms=None)
    logs.flush()
    assert [e["event"] for e in _events(stream)] == ["job_dead"]


def test_queued_lines_are_written_when_the_worker_stops_or_logging_is_reconfigured(held_writer, job_running):
    first = _capture()
    job_log = logs.JobLogger("lamplighter.broker")
    job_log.info("job_completed", duration_ms=1.0)
    logs.FlushLogsAtWorkerShutdown().after_worker_shutdown(broker=None, worker=None)
    assert [e["event"] for e in _events(first)] == ["job_completed"]
    job_log.warning("job_cancelled", duration_ms=2.0, error_type="Cancel", retry_in_ms=None)
    second = _capture()  # the old handler is closed: its queued line goes to its own stream
    assert [e["event"] for e in _events(first)] == ["job_completed", "job_cancelled"]
    assert second.getvalue() == ""


@pytest.mark.parametrize("queued_lines", [0, 1])
def test_a_closed_stream_does_not_stop_logging_from_being_reconfigured(held_writer, job_running, queued_lines,
                                                                       tmp_path):
    first = open(tmp_path / "first.log", "w")  # a real file: a closed StringIO still accepts flush()
    logs.configure(log_format="json", level="INFO", stream=first)
    for _ in range(queued_lines):
        logs.JobLogger("lamplighter.broker").info("job_completed", duration_ms=1.0)
    first.close()  # e.g. a CLI run under pytest's capsys, whose stderr is closed after the test
    second = _capture()  # closes the first handler, which can neither write nor flush
    structlog.get_logger("t").info("after")
    assert [e["event"] for e in _events(second)] == ["after"]


def test_the_writer_thread_writes_without_being_asked(job_running):
    stream = _capture()
    logs.JobLogger("lamplighter.broker").info("job_completed", duration_ms=1.0)
    wait_for(lambda: '"job_completed"' in stream.getvalue(), timeout=10, interval=0.005,
             message="the writer thread to write the queued line")


def test_on_a_terminal_per_job_lines_take_the_console_renderer(job_running):
    stream = io.StringIO()
    logs.configure(log_format="console", level="INFO", stream=stream)
    try:
        logs.JobLogger("lamplighter.broker").info("job_completed", duration_ms=1.0, password="hunter2")
        text = stream.getvalue()
        assert "job_completed" in text and "j-7" in text and "hunter2" not in text
    finally:
        logs.configure(log_format="json", level="INFO", stream=io.StringIO())


# ---- the string pre-check of redaction -----------------------------------------------------------

_SECRET_SHAPES = re.compile(r"://|bearer", re.IGNORECASE)  # what the two substitutions can match


@given(st.text(alphabet=st.sampled_from(list("bBeEaArR:/ İKſx\u0130\u212a")) | st.characters(), max_size=40))
@settings(max_examples=500, deadline=None)
def test_the_pre_check_passes_every_string_a_substitution_could_change(text):
    """_maybe_secret_in replaced a case-insensitive regex search: it may pass more strings to the
    substitutions, never fewer."""
    if _SECRET_SHAPES.search(text):
        assert logs._maybe_secret_in(text)
    if logs._maybe_secret_in(text) is False:
        assert logs._scrub(text) == text


def test_secrets_inside_strings_are_redacted_whatever_their_case():
    assert logs._scrub({"note": "BeArEr abc.def", "n": 1, "deep": {"url": "postgresql://u:pw@h/d"}}) == {
        "note": "BeArEr [REDACTED]", "n": 1, "deep": {"url": "postgresql://u:[REDACTED]@h/d"}}
