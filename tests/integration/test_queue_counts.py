"""Queue figures stay cheap however deep a queue is (storage/queues.py, storage/stats.py): each
count is exact up to storage.queues.EXACT_UP_TO jobs of a queue and the planner's estimate past
it, named in ``estimated``. The page that shows them costs the same for a backlog of millions as
for one of thousands (bench/overload.py measures the pages while a million jobs drain)."""
import json

import pytest

from console.dashboard import render
from console.verbs import stats as stats_verbs
from storage import queries, queues, stats

FINISHED = ("completed", "dead", "cancelled")


def _insert(sql, count, *, queue="counts", actor="counts.a", state="queued", later=False, key=None, priority=0,
            age_s=1.0):
    """``count`` jobs; queued ones available ``age_s`` seconds ago and earlier (or in an hour)."""
    sql("INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, state, message, priority, available_at, "
        "concurrency_key, finished_at) "
        "SELECT lamplighter.new_message_id(), %(queue)s, %(actor)s, %(state)s, '{}'::jsonb, %(priority)s, "
        "       CASE WHEN %(later)s THEN lamplighter.now() + interval '1 hour' "
        "            ELSE lamplighter.now() - make_interval(secs => %(age)s + g) END, "
        "       %(key)s, CASE WHEN %(state)s IN ('completed', 'dead', 'cancelled') THEN lamplighter.now() END "
        "FROM generate_series(0, %(count)s - 1) g",
        {"queue": queue, "actor": actor, "state": state, "priority": priority, "later": later, "age": age_s,
         "key": key, "count": count})


def _truth(sql, queue="counts"):
    """The same figures by plain count(*): what the bounded counts must agree with."""
    [row] = sql("SELECT count(*) FILTER (WHERE state = 'queued' AND available_at <= lamplighter.now()), "
                "       count(*) FILTER (WHERE state = 'queued' AND available_at > lamplighter.now()), "
                "       count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state = 'dead'), "
                "       count(*) FILTER (WHERE state = 'cancelled') "
                "FROM dramatiq.queue WHERE queue_name = %s", (queue,))
    return dict(zip(("waiting", "scheduled", "completed", "dead", "cancelled"), row))


def _figures(figures):
    return {name: getattr(figures, name) for name in ("waiting", "scheduled", "completed", "dead", "cancelled")}


def test_under_the_bound_every_figure_is_exact(database_url, sql):
    _insert(sql, 7, age_s=1)
    _insert(sql, 2, priority=5, age_s=40)  # the oldest waiting job sits behind another priority
    _insert(sql, 3, later=True)
    _insert(sql, 4, key="tenant-a", age_s=2)  # with a concurrency key: the other claim index
    _insert(sql, 1, key="tenant-a", later=True)
    _insert(sql, 2, state="dead")
    _insert(sql, 5, state="completed")
    _insert(sql, 1, state="cancelled")
    _insert(sql, 3, queue="other", actor="other.b", key="k", age_s=5)  # only keyed jobs in this queue
    _insert(sql, 2, queue="finished-only", actor="f.c", state="dead")

    found = {q.queue_name: q for q in queues.stats(window_seconds=60)}

    assert set(found) == {"counts", "other", "finished-only"}
    assert _figures(found["counts"]) == _truth(sql) == {"waiting": 13, "scheduled": 4, "completed": 5, "dead": 2,
                                                       "cancelled": 1}
    assert found["counts"].estimated == ()
    assert 41 <= found["counts"].oldest_waiting_age < 60
    assert _figures(found["other"]) == _truth(sql, "other")
    assert 7 <= found["other"].oldest_waiting_age < 30
    assert (found["finished-only"].dead, found["finished-only"].waiting) == (2, 0)

    by_actor = {(a.queue_name, a.actor_name): a for a in stats.by_actor(window_seconds=60)}
    a = by_actor[("counts", "counts.a")]
    assert (a.waiting, a.scheduled, a.dead, a.estimated) == (13, 4, 2, ())
    assert 41 <= a.oldest_waiting_age < 60
    assert by_actor[("finished-only", "f.c")].dead == 2
    assert by_actor[("other", "other.b")].waiting == 3


def test_past_the_bound_figures_are_estimates_named_as_such(database_url, sql, monkeypatch):
    monkeypatch.setattr(queues, "EXACT_UP_TO", 50)
    _insert(sql, 600, actor="counts.a")
    _insert(sql, 300, actor="counts.b", age_s=700)
    _insert(sql, 3, later=True)
    _insert(sql, 240, state="dead")
    _insert(sql, 20, state="completed")
    _insert(sql, 10, queue="small")
    sql("ANALYZE dramatiq.queue")  # what autovacuum does after a bulk enqueue

    found = {q.queue_name: q for q in queues.stats(window_seconds=60)}

    counts = found["counts"]
    assert counts.estimated == ("waiting", "dead")
    assert 0.8 * 900 <= counts.waiting <= 1.2 * 900
    assert 0.8 * 240 <= counts.dead <= 1.2 * 240
    assert (counts.scheduled, counts.completed) == (3, 20)  # under the bound: counted
    assert counts.oldest_waiting_age >= 700 + 299  # the oldest is found, not estimated
    assert (found["small"].waiting, found["small"].estimated) == (10, ())

    by_actor = {(a.queue_name, a.actor_name): a for a in stats.by_actor(window_seconds=60)}
    a, b = by_actor[("counts", "counts.a")], by_actor[("counts", "counts.b")]
    assert "waiting" in a.estimated and "waiting" in b.estimated
    assert 0.8 * 600 <= a.waiting + a.scheduled <= 1.2 * 603 and 0.8 * 300 <= b.waiting <= 1.2 * 300
    assert by_actor[("small", "counts.a")].estimated == ()

    rows = stats_verbs.table_rows(stats_verbs.stats_view(window_seconds=60))
    [shown] = [r for r in rows if r["queue"] == "counts"]
    assert shown["waiting"] == f"≈{counts.waiting}" and shown["completed"] == 20
    assert "≈" in str(render.figure(counts, "dead")) and render.figure(counts, "completed") == "20"


@pytest.mark.parametrize("concern, name", [("queues", "queue_stats"), ("stats", "stats_by_actor")])
def test_a_deep_queue_costs_the_query_no_more_rows(database_url, sql, concern, name):
    """Rows the plan reads from the queue table: bounded by the count's bound, not the backlog
    (the unbounded queries read every job: 5,000 here)."""
    bound = 40
    _insert(sql, 5000)
    _insert(sql, 2000, key="k")
    _insert(sql, 1500, state="dead")
    _insert(sql, 1500, state="completed")
    sql("VACUUM ANALYZE dramatiq.queue")
    text = queries.queries(concern)[name]
    [[plan]] = sql("EXPLAIN (ANALYZE, FORMAT JSON) " + text, {"window_seconds": 60, "exact_up_to": bound})
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def read(node):
        own = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) if node.get("Relation Name") == "queue" else 0
        return own + sum(read(child) for child in node.get("Plans", ()))

    rows_read = read(plan[0]["Plan"])
    assert 0 < rows_read <= 12 * (bound + 1), rows_read


def _history(sql, count, *, actor, outcome, queue="counts", duration_ms=10.0, age_s=1.0):
    sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, duration_ms, "
        "outcome) SELECT gen_random_uuid(), 1, %(actor)s, %(queue)s, "
        "lamplighter.now() - make_interval(secs => %(age)s + g / 100.0), %(ms)s, %(outcome)s "
        "FROM generate_series(0, %(count)s - 1) g",
        {"actor": actor, "queue": queue, "age": age_s, "ms": duration_ms, "outcome": outcome, "count": count})


def test_a_busy_window_reads_its_newest_attempts_and_estimates_the_rest(database_url, sql, monkeypatch):
    monkeypatch.setattr(queues, "EXACT_UP_TO", 50)
    _history(sql, 400, actor="counts.a", outcome="completed", duration_ms=10.0, age_s=100)
    _history(sql, 100, actor="counts.b", outcome="failed", duration_ms=30.0, age_s=100)
    _history(sql, 40, actor="counts.a", outcome="completed", duration_ms=20.0, age_s=1)  # the newest
    _history(sql, 9, actor="counts.c", outcome="completed", age_s=7200)  # before the window
    sql("ANALYZE lamplighter.job_history")

    by_actor = {a.actor_name: a for a in stats.by_actor(window_seconds=3600)}

    a, b = by_actor["counts.a"], by_actor["counts.b"]
    assert set(a.estimated) == set(b.estimated) == {"completed", "failed"}
    assert 0.8 * 440 <= a.completed <= 1.2 * 440 and 0.8 * 100 <= b.failed <= 1.2 * 100
    assert (a.failed, b.completed) == (0, 0)
    assert a.run_ms_p50 == 20.0  # of the newest 51 attempts: 40 of 20 ms, then 10 ms ones
    assert "counts.c" not in by_actor

    monkeypatch.setattr(queues, "EXACT_UP_TO", 20_000)
    exact = {a.actor_name: a for a in stats.by_actor(window_seconds=3600)}
    assert (exact["counts.a"].completed, exact["counts.b"].failed, exact["counts.a"].estimated) == (440, 100, ())


def test_the_overview_reads_the_leader_without_counting_the_queues(database_url, sql):
    from storage import metrics

    assert metrics.leader(lease_seconds=10) is None
    sql("INSERT INTO lamplighter.scheduler_lease (name, holder, acquired_at, expires_at, renewed_at) "
        "VALUES ('scheduler', 'host:1', lamplighter.now(), lamplighter.now() + interval '10 seconds', lamplighter.now())")
    assert metrics.leader(lease_seconds=10) == "host:1" == metrics.snapshot(lease_seconds=10).leader
