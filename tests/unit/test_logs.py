"""No secret reaches a log line, whoever logs it (structlog or the standard library)."""
import io
import json
import logging

import structlog

from storage import logs


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
