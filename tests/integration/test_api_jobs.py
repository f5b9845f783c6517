"""The HTTP API's jobs over uvicorn on 127.0.0.1: enqueue (checked against the actor's signature,
Location, Idempotency-Key, unique keys, tenants), the batch path, listing with filters and keyset
pages, one job with its attempts and secrets redacted, and the operator's actions, each audited."""
import json
import uuid

from scheduler import sync
from storage import jobs
from storage.schedules import Definition

PING = {"actor": "maintenance.ping", "kwargs": {"note": "hi"}}


def _fail_attempt(sql, job_id, message: str, attempt: int = 1):
    """Record a failed attempt in the history and kill the job, as a worker would."""
    sql("UPDATE dramatiq.queue SET state = 'dead', attempt = %s, finished_at = lamplighter.now(), "
        "last_error = 'RuntimeError: ' || %s, mtime = lamplighter.now() WHERE message_id = %s",
        (attempt, message, job_id))
    sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, duration_ms, "
        "outcome, error_type, error_message, traceback) SELECT message_id, %s, actor_name, queue_name, "
        "lamplighter.now(), 12.5, 'dead', 'RuntimeError', %s, 'Traceback: ' || %s FROM dramatiq.queue "
        "WHERE message_id = %s", (attempt, message, message, job_id))


def test_enqueue_answers_201_with_location_and_records_the_token_id(api, sql):
    token = api.token("enqueue", "read")
    answer = api.call("POST", "/api/jobs", token, json={**PING, "priority": 5, "correlation_id": "req-1"})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert answer.headers["Location"] == f"/api/jobs/{body['id']}"
    assert (body["actor"], body["queue"], body["created"]) == ("maintenance.ping", "maintenance", True)
    job = jobs.get(body["id"])
    assert (job.kwargs, job.priority, job.correlation_id) == ({"note": "hi"}, 5, "req-1")
    assert job.enqueued_by.startswith("token:") and token not in job.enqueued_by
    [(token_id,)] = sql("SELECT id FROM lamplighter.api_tokens")
    assert job.enqueued_by == f"token:{token_id}"


def test_arguments_that_do_not_bind_and_unknown_actors_are_422_with_the_reason(api):
    token = api.token("enqueue")
    bad = api.call("POST", "/api/jobs", token, json={"actor": "maintenance.ping", "kwargs": {"nope": 1}})
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_input" and "unexpected keyword argument 'nope'" in bad.json()["message"]
    unknown = api.call("POST", "/api/jobs", token, json={"actor": "no.such.actor"})
    assert unknown.status_code == 422 and "unknown actor 'no.such.actor'" in unknown.json()["message"]
    both = api.call("POST", "/api/jobs", token, json={**PING, "delay": 5, "eta": "2030-01-01T00:00:00Z"})
    assert both.status_code == 422 and "delay or eta" in both.json()["message"]
    extra = api.call("POST", "/api/jobs", token, json={**PING, "surprise": True})
    assert extra.status_code == 422 and "surprise" in extra.json()["message"]
    assert jobs.list_jobs() == []


def test_delay_and_eta_set_when_the_job_may_run(api, db_clock):
    token = api.token("enqueue")
    delayed = api.call("POST", "/api/jobs", token, json={**PING, "delay": 600}).json()["id"]
    eta = api.call("POST", "/api/jobs", token, json={**PING, "eta": "2099-01-01T00:00:00+00:00"}).json()["id"]
    now = db_clock.now()
    assert 590 <= (jobs.get(delayed).available_at - now).total_seconds() <= 610
    assert jobs.get(eta).available_at.year == 2099


def test_an_idempotent_retry_returns_the_same_job_and_a_reused_key_is_refused(api, sql):
    token = api.token("enqueue")
    headers = {"Idempotency-Key": "order-42"}
    first = api.call("POST", "/api/jobs", token, json=PING, headers=headers)
    again = api.call("POST", "/api/jobs", token, json=PING, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(1,)]
    reused = api.call("POST", "/api/jobs", token, json={**PING, "kwargs": {"note": "other"}}, headers=headers)
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")
    # Another token's key of the same name is its own.
    other = api.call("POST", "/api/jobs", api.token("enqueue"), json=PING, headers=headers)
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    # A failed request keeps nothing: its retry does the work.
    failed = api.call("POST", "/api/jobs", token, json={"actor": "no.such.actor"}, headers={"Idempotency-Key": "k2"})
    assert failed.status_code == 422
    assert api.call("POST", "/api/jobs", token, json=PING, headers={"Idempotency-Key": "k2"}).status_code == 201


def test_a_held_unique_key_returns_its_holder_with_200(api):
    token = api.token("enqueue")
    body = {**PING, "unique_key": "ping-once", "unique_on_conflict": "ignore"}
    first = api.call("POST", "/api/jobs", token, json=body)
    second = api.call("POST", "/api/jobs", token, json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"] and second.json()["created"] is False


def test_the_batch_enqueues_in_order_all_or_nothing(api, sql):
    token = api.token("enqueue")
    many = [{"actor": "maintenance.ping", "kwargs": {"note": str(i)}} for i in range(250)]
    mixed = many + [{**PING, "delay": 60}, {**PING, "unique_key": "u1"}, {**PING, "tenant_id": "acme"}]
    answer = api.call("POST", "/api/jobs/batch", token, json={"jobs": mixed})
    assert answer.status_code == 201, answer.text
    ids = answer.json()["ids"]
    assert len(ids) == 253
    assert [jobs.get(i).kwargs["note"] for i in ids[:3]] == ["0", "1", "2"]
    assert jobs.get(ids[-1]).tenant_id == "acme" and jobs.get(ids[-2]).unique_key == "u1"
    assert sql("SELECT count(DISTINCT enqueued_by) FROM dramatiq.queue") == [(1,)]
    bad = api.call("POST", "/api/jobs/batch", token, json={"jobs": many[:5] + [{"actor": "maintenance.ping",
                                                                                  "args": [1, 2, 3]}]})
    assert bad.status_code == 422 and bad.json()["message"].startswith("jobs[5]: ")
    assert sql("SELECT count(*) FROM dramatiq.queue") == [(253,)]
    too_many = api.call("POST", "/api/jobs/batch", token, json={"jobs": [PING] * 10_001})
    assert too_many.status_code == 422


def test_listing_filters_pages_by_keyset_and_searches_error_text(api, sql):
    token = api.token("enqueue", "read")
    ids = [api.call("POST", "/api/jobs", token, json={**PING, "kwargs": {"note": str(i)}}).json()["id"]
           for i in range(7)]
    _fail_attempt(sql, ids[2], "upstream timeout after 30 s")
    _fail_attempt(sql, ids[4], "permission denied")
    seen, cursor = [], None
    while True:
        page = api.call("GET", "/api/jobs", token, params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        seen += [j["id"] for j in page.json()["jobs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    timeouts = api.call("GET", "/api/jobs", token, params={"error": "TIMEOUT"}).json()["jobs"]
    assert [j["id"] for j in timeouts] == [ids[2]]
    dead = api.call("GET", "/api/jobs", token, params={"state": "dead"}).json()["jobs"]
    assert {j["id"] for j in dead} == {ids[2], ids[4]}
    assert api.call("GET", "/api/jobs", token, params={"queue": "nope"}).json()["jobs"] == []
    assert api.call("GET", "/api/jobs", token, params={"since": "2999-01-01T00:00:00Z"}).json()["jobs"] == []
    assert api.call("GET", "/api/jobs", token, params={"cursor": "garbage"}).status_code == 422


def test_the_error_search_uses_the_trigram_index(database_url, sql):
    sql("SET enable_seqscan = off")  # on an empty table any plan is cheap: ask whether the index can serve it
    plan = sql("EXPLAIN SELECT job_id FROM lamplighter.job_history WHERE error_message ILIKE %s", ("%timeout%",))
    assert any("job_history_error_trgm_idx" in line for (line,) in plan), plan


def test_one_job_shows_every_attempt_with_secrets_redacted(api, sql):
    token = api.token("enqueue", "read")
    secret = "llt_" + "A" * 43
    job_id = api.call("POST", "/api/jobs", token, json={"actor": "maintenance.ping", "kwargs": {
        "note": f"call with {secret} please"}}).json()["id"]
    _fail_attempt(sql, job_id, f"auth failed for https://bob:hunter2@example.org with {secret}")
    shown = api.call("GET", f"/api/jobs/{job_id}", token)
    assert shown.status_code == 200
    body = shown.json()
    assert [a["outcome"] for a in body["attempts"]] == ["dead"]
    assert secret not in shown.text and "hunter2" not in shown.text
    assert "[REDACTED]" in body["kwargs"]["note"] and "[REDACTED]" in body["attempts"][0]["error_message"]
    assert api.call("GET", f"/api/jobs/{uuid.uuid4()}", token).status_code == 404
    assert api.call("GET", "/api/jobs/not-a-uuid", token).status_code == 422


def test_actions_go_through_the_cli_functions_and_are_audited(api, sql):
    token = api.token(role="superadmin")
    first, second, third = (api.call("POST", "/api/jobs", token, json=PING).json()["id"] for _ in range(3))
    assert api.call("POST", f"/api/jobs/{first}/cancel", token).json()["result"] == "cancelled"
    assert api.call("POST", f"/api/jobs/{second}/discard", token).json()["result"] == "discarded"
    assert jobs.get(second).state == "dead" and jobs.get(second).last_error.startswith("Discarded: by token:")
    assert api.call("POST", f"/api/jobs/{second}/discard", token).status_code == 409
    edited = api.call("POST", f"/api/jobs/{first}/retry", token, json={"kwargs": {"note": "again"}})
    assert edited.status_code == 200 and jobs.get(first).kwargs == {"note": "again"}
    misfit = api.call("POST", f"/api/jobs/{second}/retry", token, json={"args": [1, 2, 3]})
    assert misfit.status_code == 422
    bulk = api.call("POST", "/api/jobs/retry", token, json={"actor": "maintenance.ping"})
    assert bulk.json()["ids"] == [second]
    assert api.call("POST", f"/api/jobs/{third}/retry", token).status_code == 409  # still queued
    actions = [(e["action"], e["target_id"]) for e in api.call("GET", "/api/audit", token,
                                                               params={"action": "job.*"}).json()]
    assert {("job.cancelled", first), ("job.discarded", second), ("job.redriven", first),
            ("job.redriven", second)} <= set(actions)
    [(token_id,)] = sql("SELECT id FROM lamplighter.api_tokens")
    assert {e["actor"] for e in api.call("GET", "/api/audit", token, params={"action": "job.*"}).json()} == {
        f"token:{token_id}"}


def test_queue_and_schedule_controls_and_stats(api, sql):
    token = api.token(role="superadmin")
    assert api.call("POST", "/api/queues/maintenance/pause", token).json() == {"queue": "maintenance",
                                                                               "result": "paused"}
    assert sql("SELECT paused FROM lamplighter.queues WHERE name = 'maintenance'") == [(True,)]
    assert api.call("POST", "/api/queues/maintenance/resume", token).status_code == 200
    key = "api.ping"
    sync.sync([Definition(key=key, actor_name="maintenance.ping", queue_name="maintenance", priority=0,
                          max_attempts=4, concurrency_key=None, concurrency_limit=None, cron="*/5 * * * *", zone="UTC",
                          args=[], kwargs={"note": key}, misfire="run_once", grace_seconds=60.0, overlap="allow")])
    assert api.call("POST", f"/api/schedules/{key}/pause", token).json()["result"] == "paused"
    assert api.call("POST", f"/api/schedules/{key}/resume", token).json()["result"] == "resumed"
    run = api.call("POST", f"/api/schedules/{key}/run", token)
    assert run.status_code == 200 and jobs.get(run.json()["job_id"]).enqueued_by.endswith(" manual by token:1")
    assert api.call("POST", "/api/schedules/no-such/pause", token).status_code == 404
    assert key in [s["key"] for s in api.call("GET", "/api/schedules", token).json()]
    actions = {e["action"] for e in api.call("GET", "/api/audit", token).json()}
    assert {"queue.paused", "queue.resumed", "schedule.paused", "schedule.resumed", "schedule.run_now"} <= actions
    job_id = api.call("POST", "/api/jobs", token, json=PING).json()["id"]
    _fail_attempt(sql, job_id, "boom")
    stats = api.call("GET", "/api/queues/stats", token)
    assert stats.status_code == 200
    [ping] = [a for a in stats.json()["actors"] if a["actor"] == "maintenance.ping"]
    assert (ping["failed"], ping["dead"], ping["run_ms_p50"]) == (1, 1, 12.5)


def test_errors_are_json_and_large_bodies_are_413(api):
    token = api.token("enqueue")
    assert api.call("GET", "/nowhere").json() == {"error": "not_found", "message": "no route for GET /nowhere"}
    assert api.call("DELETE", "/api/jobs", token).json()["error"] == "method_not_allowed"
    broken = api.call("POST", "/api/jobs", token, data="{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["message"]
    huge = api.call("POST", "/api/jobs", token, data=b"x" * (17 * 1024 * 1024),
                    headers={"Content-Type": "application/json"})
    assert (huge.status_code, huge.json()["error"]) == (413, "body_too_large")
    assert api.call("GET", "/api/openapi.json").json()["info"]["title"] == "Lamplighter"
    assert api.call("GET", "/api/docs").status_code == 200


def test_a_tenant_bound_token_sees_its_tenants_jobs_only(api, sql):
    from domain import tenants

    tenants.create_tenant("acme", "Acme", by="tests")
    tenants.create_tenant("globex", "Globex", by="tests")
    platform = api.token(role="superadmin")
    theirs = api.call("POST", "/api/jobs", platform, json={**PING, "tenant_id": "globex"}).json()["id"]
    acme = api.token("read", "operate", "enqueue", tenant="acme")
    mine = api.call("POST", "/api/jobs", acme, json=PING).json()["id"]
    assert jobs.get(mine).tenant_id == "acme"
    assert api.call("POST", "/api/jobs", acme, json={**PING, "tenant_id": "globex"}).status_code == 403
    assert api.call("GET", f"/api/jobs/{theirs}", acme).status_code == 404
    assert api.call("POST", f"/api/jobs/{theirs}/cancel", acme).status_code == 404
    assert api.call("GET", f"/api/jobs/{mine}", acme).status_code == 200
    assert [j["id"] for j in api.call("GET", "/api/jobs", acme).json()["jobs"]] == [mine]
    assert api.call("GET", "/api/jobs", acme, params={"tenant": "globex"}).status_code == 404
    assert json.loads(api.call("GET", "/api/queues/stats", acme).text)["error"] == "forbidden"


def test_every_branch_of_the_jobs_page_reads_an_index_never_the_whole_queue(sql):
    """With sequential scans priced out, a branch that still shows one has no usable index: the
    waiting jobs' branch had one (`state = 'queued'` alone matches neither partial claim index),
    which read the whole table, ten million finished rows included, for every page."""
    from storage.jobs import SQL, STATES
    from storage.tenants import TenantScope, scoped

    sql("ANALYZE dramatiq.queue")
    params = scoped(TenantScope.every(), states=list(STATES), tenant=None, actor=None, queue=None, error=None,
                    since=None, until=None, after_at=None, after_id=None, limit=50)
    sql("SET enable_seqscan = off")  # the fixture's own session
    plan = "\n".join(line for (line,) in sql("EXPLAIN " + SQL["job_page"], params))
    assert "Seq Scan" not in plan, plan
