"""Group completion callbacks and declarative window limits across real worker processes
(`dramatiq tests.worker_app`), one of them killed with kill -9 in the middle of a group."""
from __future__ import annotations

import dramatiq

from tests import executions
from tests.conftest import wait_for


def test_a_group_callback_runs_once_after_the_last_member_though_a_worker_was_killed(
        database_url, broker, sql, worker_processes, tmp_path):
    import tests.worker_app as app

    path = tmp_path / "executions.log"
    killed = worker_processes.start("killed", database_url, sql)
    survivor = worker_processes.start("survivor", database_url, sql)
    group = dramatiq.group([app.timed.message(str(path), f"m{i}", 0.4) for i in range(100)], broker=broker)
    group.add_completion_callback(app.timed.message(str(path), "callback", 0.0))
    group.run()

    def members_done() -> int:
        return sql("SELECT count(*) FROM lamplighter.group_members")[0][0]

    # Mid-group: some members recorded, the killed process running others.
    wait_for(lambda: members_done() >= 30, timeout=60, message="30 members completed")
    killed.kill()
    assert members_done() < 100
    wait_for(lambda: any(e.tag == "callback" for e in executions.read(path)), timeout=60,
             message=f"the callback ran\n{worker_processes.logs()}")
    wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE state IN ('queued', 'running')") == [(0,)],
             timeout=30, message="every job settled")
    survivor.stop()

    runs = executions.read(path)
    callbacks = [e for e in runs if e.tag == "callback"]
    assert len(callbacks) == 1, callbacks
    members = [e for e in runs if e.tag != "callback"]
    assert {e.tag for e in members if not e.open} == {f"m{i}" for i in range(100)}
    # Some member was cut short by the kill (ran again elsewhere), and the callback started after
    # the end of every member's run.
    assert any(e.open and e.pid == killed.pid for e in members)
    assert callbacks[0].started >= max(e.ended for e in members if not e.open)
    assert members_done() == 100
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE message->'args'->>1 = 'callback'") == [(1,)]


def test_a_window_limit_holds_across_two_worker_processes(database_url, broker, sql, worker_processes):
    import tests.worker_app as app

    worker_processes.start("a", database_url, sql)
    worker_processes.start("b", database_url, sql)
    broker.send_many(app.window_limited, [("acme", n) for n in range(200)])
    wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'completed'") == [(200,)],
             timeout=60, message=f"200 limited jobs ran\n{worker_processes.logs()}")
    starts = [float(row[0]) for row in sql(
        "SELECT extract(epoch FROM started_at) FROM lamplighter.job_history ORDER BY started_at")]
    assert len(starts) == 200  # one attempt each: waiting for the limit used none
    crowded = [(starts[i], starts[i + 10]) for i in range(len(starts) - 10) if starts[i + 10] - starts[i] < 1.0]
    assert crowded == [], f"11 starts within a second: {crowded[:5]}"
    assert sql("SELECT count(DISTINCT h.worker_id) FROM lamplighter.job_history h") == [(2,)]
