"""The CLI's views (console/verbs/) are plain data a caller can read without capturing stdout:
the dashboard will render the same objects the CLI prints."""
import dataclasses
import json
import uuid

from console.verbs import jobs as job_verbs
from console.verbs import stats as stats_verbs
from console.verbs import workers as worker_verbs
from storage import connection, jobs, queues, workers
from storage.queues import QueueStats
from storage.workers import WorkerInfo
from tests.conftest import wait_for


def _plain(value):
    """What `--json` prints: the view must survive the round trip as data."""
    return json.loads(json.dumps(dataclasses.asdict(value), default=str))


def test_job_rows_are_dataclasses_newest_change_first(broker):
    import actors

    first = actors.maintenance.ping.send(note="first").message_id
    second = actors.maintenance.ping.send(note="second").message_id
    by = "operator-with-a-very-long-name-" + "x" * 60
    jobs.cancel(first, by=by)  # changed last: listed first

    rows = job_verbs.job_rows(actor="maintenance.ping")

    assert all(isinstance(r, job_verbs.JobRow) for r in rows)
    assert [(r.id, r.state, r.queue, r.attempt) for r in rows] == [
        (first, "cancelled", "maintenance", 0), (second, "queued", "maintenance", 0)]
    assert rows[0].last_error == ("Cancelled: by " + by)[:60]
    assert rows[1].last_error is None
    assert _plain(rows[0])["id"] == first
    assert job_verbs.job_rows(state="queued", actor="maintenance.ping") == [rows[1]]


def test_job_view_holds_the_fields_events_and_attempts(broker, run_worker):
    import actors

    done = actors.maintenance.ping.send(note="view").message_id
    run_worker(threads=1)
    wait_for(lambda: jobs.get(done).state == "completed", message="the ping completed")
    # Paused, so the worker does not run the redriven job before the view is read: the view must
    # show the one attempt on record, not a second one racing in.
    queues.set_paused("maintenance", True, by="tester")
    jobs.requeue(done, by="tester", detail={"edited_args": False})

    view = job_verbs.job_view(done)

    shown = dict(view.fields)
    assert str(shown["id"]) == done
    assert shown["actor"] == "maintenance.ping"
    assert shown["kwargs"] == '{"note": "view"}'
    assert [(e.event, e.by, e.detail) for e in view.events] == [("redriven", "tester", '{"edited_args": false}')]
    [attempt] = view.attempts
    assert (attempt.attempt, attempt.outcome, attempt.error) == (1, "completed", None)
    assert len(attempt.worker) == 8
    assert view.job.message_id == uuid.UUID(done)  # the stored job, for `job --json`


def test_stats_view_is_the_queue_figures_and_its_window(broker):
    import actors

    actors.maintenance.ping.send(note="waiting")
    queues.set_paused("maintenance", True, by="tester")

    view = stats_verbs.stats_view(window_seconds=120)

    assert view.window_seconds == 120
    [maintenance] = [q for q in view.queues if q.queue_name == "maintenance"]
    assert isinstance(maintenance, QueueStats)
    assert (maintenance.waiting, maintenance.running, maintenance.dead, maintenance.paused) == (1, 0, 0, True)
    [row] = [r for r in stats_verbs.table_rows(view) if r["queue"].startswith("maintenance")]
    assert row["queue"] == "maintenance (paused)" and row["waiting"] == 1
    assert _plain(view)["queues"][0]["queue_name"] == view.queues[0].queue_name


def test_workers_view_lists_registered_workers(database_url):
    conn = connection.raw_connection("tests-workers-view")
    conn.autocommit = True
    try:
        worker_id = str(uuid.uuid4())
        workers.register(conn, worker_id=worker_id, hostname="view-host", pid=4242, queues=["maintenance"],
                         version="test")

        [worker] = worker_verbs.workers_view()

        assert isinstance(worker, WorkerInfo)
        assert (str(worker.id), worker.hostname, worker.pid, worker.queues, worker.running_jobs, worker.stopping) == (
            worker_id, "view-host", 4242, ["maintenance"], 0, False)
        [row] = worker_verbs.table_rows([worker])
        assert isinstance(row["heartbeat_age_s"], float) and 0 <= row["heartbeat_age_s"] < 60
        assert _plain(worker)["hostname"] == "view-host"
    finally:
        conn.close()
