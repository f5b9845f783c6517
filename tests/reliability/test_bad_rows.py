"""Rows written into dramatiq.queue by SQL, past every client-side check: each malformed one ends
`dead` with a readable reason in last_error, without running, and the worker that met it keeps
running other jobs. Text PostgreSQL's jsonb refuses never becomes a row at all."""
from __future__ import annotations

import json
import uuid

import psycopg2
import pytest

import actors
from storage import jobs
from tests.conftest import wait_for

# The message text of each bad row ("ID" stands for the row's own message_id) and a fragment of
# the reason it must be dead with.
PING = '"actor_name": "maintenance.ping", "message_id": "ID"'
DEEP = "[" * 10_000 + "]" * 10_000
BAD_ROWS = {
    "args not a list": ('{%s, "args": {"note": 1}, "kwargs": {}, "options": {}}' % PING, "'args' must be a list"),
    "kwargs not an object": ('{%s, "args": [], "kwargs": ["note"], "options": {}}' % PING,
                             "'kwargs' must be a dict"),
    "options not an object": ('{%s, "args": [], "kwargs": {}, "options": "fast"}' % PING,
                              "'options' must be a dict"),
    "actor_name not a string": ('{"actor_name": ["maintenance.ping"], "message_id": "ID", "args": [], '
                                '"kwargs": {}, "options": {}}', "'actor_name' must be a str"),
    "timestamp not an integer": ('{%s, "args": [], "kwargs": {}, "options": {}, "message_timestamp": "now"}' % PING,
                                 "'message_timestamp' must be an integer"),
    "message not an object": ('"maintenance.ping"', "not an object"),
    "message_id of another row": ('{"actor_name": "maintenance.ping", "message_id": "%s", "args": [], "kwargs": {}, '
                                  '"options": {}}' % uuid.uuid4(), "does not match the row's message_id"),
    "unknown actor": ('{"actor_name": "no_such.actor", "message_id": "ID", "args": [], "kwargs": {}, "options": {}}',
                      "unknown actor 'no_such.actor'"),
    "10 MB of arguments": ('{%s, "args": [], "kwargs": {"note": "%s"}, "options": {}}' % (PING, "x" * 10_000_000),
                           "payload too large"),
    "10,000 levels of nesting": ('{%s, "args": [], "kwargs": {"note": %s}, "options": {}}' % (PING, DEEP),
                                 "nested too deeply"),
    "a 5,000-digit number": ('{%s, "args": [%s], "kwargs": {}, "options": {}}' % (PING, "9" * 5_000),
                             "undecodable message"),
    "too many arguments": ('{%s, "args": ["a", "b", "c"], "kwargs": {}, "options": {}}' % PING,
                           "arguments do not fit maintenance.ping"),
    "unknown keyword": ('{%s, "args": [], "kwargs": {"colour": "red"}, "options": {}}' % PING,
                        "arguments do not fit maintenance.ping"),
}


def _insert(sql, message: str) -> str:
    job_id = str(uuid.uuid4())
    sql("INSERT INTO dramatiq.queue (message_id, queue_name, state, message) VALUES (%s, 'maintenance', 'queued', %s)",
        (job_id, message.replace('"ID"', json.dumps(job_id))))
    return job_id


def test_every_bad_row_goes_dead_with_its_reason_and_the_worker_keeps_working(broker, run_worker, sql, api):
    # Good jobs on both sides of the bad rows: the same claim batches carry both kinds.
    before = [actors.maintenance.ping.send(note=f"before {i}").message_id for i in range(3)]
    bad = {case: _insert(sql, message) for case, (message, _) in BAD_ROWS.items()}
    between = [actors.maintenance.ping.send(note=f"between {i}").message_id for i in range(3)]
    run_worker(threads=2)
    ids = list(bad.values()) + before + between
    wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) "
                         "AND state IN ('dead', 'completed')", (ids,))[0][0] == len(ids),
             timeout=30, message="every row finished")
    for case, (_, reason) in BAD_ROWS.items():
        job = jobs.get(bad[case])
        assert job.state == "dead", case
        assert reason in (job.last_error or ""), (case, job.last_error)
        assert job.attempt == 0, case  # never ran
        assert len(job.last_error) <= 2000, case
    assert {jobs.get(job_id).state for job_id in before + between} == {"completed"}
    # The same worker, after all of them, still runs what comes next.
    after = actors.maintenance.ping.send(note="after the bad rows")
    wait_for(lambda: jobs.get(after.message_id).state == "completed", message="a good job after the bad rows")
    # And the operator can still look at each of them.
    token = api.token(role="superadmin")
    for case, job_id in bad.items():
        answer = api.call("GET", f"/api/jobs/{job_id}", token)
        assert answer.status_code == 200, (case, answer.text[:300])
        assert answer.json()["state"] == "dead", case
    listed = api.call("GET", "/api/jobs", token, params={"state": "dead", "limit": 100})
    assert listed.status_code == 200, listed.text[:300]
    assert {job["id"] for job in listed.json()["jobs"]} == set(bad.values())


@pytest.mark.parametrize("text", [
    '{"actor_name": "maintenance.ping", "args": [',  # cut short
    "{'actor_name': 'maintenance.ping'}",  # not JSON quoting
    '{"actor_name": "maintenance.ping", "kwargs": {"note": NaN}}',
    '{"actor_name": "maintenance.ping", "kwargs": {"note": "\\ud800"}}',  # a lone surrogate
    '{"actor_name": "maintenance.ping", "kwargs": {"note": "\\u0000"}}',  # NUL, which jsonb cannot hold
])
def test_text_that_is_not_storable_json_is_refused_by_the_insert(sql, text):
    with pytest.raises(psycopg2.DataError):
        sql("INSERT INTO dramatiq.queue (message_id, queue_name, state, message) "
            "VALUES (gen_random_uuid(), 'maintenance', 'queued', %s)", (text,))
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(0,)]
