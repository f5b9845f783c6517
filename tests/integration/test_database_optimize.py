"""database.optimize against a real PostgreSQL: with the ratio at 0 every index of the hot tables
is rebuilt concurrently; a conflicting lock makes it give up within the lock timeout and say so;
an invalid `_ccnew` index left over by a failed concurrent reindex is dropped; and a worker
draining 5,000 jobs meanwhile never pauses more than a second (from the history rows)."""
from __future__ import annotations

import threading
import time

import psycopg2
import pytest

import actors
from domain import optimization
from storage import settings as settings_module
from tests.conftest import wait_for


def filenodes(sql, table):
    return dict(sql("SELECT c.relname, pg_relation_filenode(c.oid) FROM pg_index i JOIN pg_class c "
                    "ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass", (table,)))


def test_ratio_zero_reindexes_every_index_concurrently(database_url, sql):
    before = filenodes(sql, "dramatiq.queue")
    report = optimization.optimize(reindex_ratio=0.0, lock_timeout=1.0)
    assert "dramatiq.queue_pkey" in report["reindexed"] and "dramatiq.queue_claim_unkeyed_idx" in report["reindexed"]
    assert set(report["analyzed"]) == set(optimization.HOT_TABLES)
    assert (report["gave_up"], report["errors"], report["dropped_invalid"]) == ([], [], [])
    after = filenodes(sql, "dramatiq.queue")
    assert set(after) == set(before) and all(after[name] != before[name] for name in before)  # rebuilt
    assert {t["table_name"] for t in report["tables"]} >= {"dramatiq.queue", "lamplighter.job_history"}
    # A ratio no index reaches rebuilds nothing, and the actor reads it from the settings.
    assert optimization.optimize(reindex_ratio=2.0, lock_timeout=1.0)["reindexed"] == []
    assert actors.database.optimize.fn()["errors"] == []
    with pytest.raises(settings_module.SettingsError, match="at most 1 second"):
        settings_module.load({"LAMPLIGHTER_OPTIMIZE_LOCK_TIMEOUT": "5"})


def test_pgstattuple_measures_the_indexes_where_it_is_installed(database_url, sql):
    assert not any(i["measured"] for i in optimization.optimize(reindex_ratio=2.0, lock_timeout=1.0)["indexes"])
    sql("CREATE EXTENSION pgstattuple")
    report = optimization.optimize(reindex_ratio=2.0, lock_timeout=1.0)
    assert report["indexes"] and all(i["measured"] and 0 <= i["bloat"] <= 1 for i in report["indexes"])


def test_a_conflicting_lock_makes_it_give_up_within_the_timeout_and_report_it(database_url, sql):
    holder = psycopg2.connect(database_url)
    holder.cursor().execute("LOCK TABLE lamplighter.notifications IN SHARE UPDATE EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        report = optimization.optimize(reindex_ratio=0.0, lock_timeout=0.5, tables=("lamplighter.notifications",))
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    statements = [g["statement"] for g in report["gave_up"]]
    assert statements[0] == "ANALYZE lamplighter.notifications"
    assert "REINDEX INDEX CONCURRENTLY lamplighter.notifications_pkey" in statements
    assert "REINDEX INDEX CONCURRENTLY lamplighter.notifications_pending_idx" in statements
    assert all(g["reason"] == "gave up after the 0.5 s lock timeout" for g in report["gave_up"])
    assert report["reindexed"] == [] and elapsed < 0.5 * len(statements) + 2
    assert sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]  # no leftover either


def test_an_invalid_ccnew_index_left_over_is_dropped(database_url, sql):
    sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, outcome) "
        "SELECT gen_random_uuid(), 1, 'same', 'q', now(), 'completed' FROM generate_series(1, 2)")
    with pytest.raises(psycopg2.errors.UniqueViolation):  # a concurrent build that failed half-way
        sql("CREATE UNIQUE INDEX CONCURRENTLY job_history_actor_name_idx_ccnew ON lamplighter.job_history (actor_name)")
    assert sql("SELECT relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE NOT i.indisvalid") == [
        ("job_history_actor_name_idx_ccnew",)]
    report = optimization.optimize(reindex_ratio=2.0, lock_timeout=1.0)
    assert report["dropped_invalid"] == ["lamplighter.job_history_actor_name_idx_ccnew"]
    assert sql("SELECT to_regclass('lamplighter.job_history_actor_name_idx_ccnew')") == [(None,)]


# What the drain writes: the queue (claims, finishes) and the history (a row per attempt).
DRAINED_TABLES = ("dramatiq.queue", "lamplighter.job_history")


def test_a_worker_draining_5000_jobs_never_pauses_more_than_a_second(broker, run_worker, sql):
    broker.send_many(actors.maintenance.ping, [{"note": str(i)} for i in range(5000)])
    run_worker(threads=8, queues=["maintenance"])
    runs, stop = [], threading.Event()

    def optimize_while_draining():
        from storage import connection

        try:
            while not stop.is_set():
                started = time.time()
                report = optimization.optimize(reindex_ratio=0.0, lock_timeout=1.0, tables=DRAINED_TABLES)
                runs.append((started, time.time(), report))
        finally:
            connection.init_database().close()

    maintainer = threading.Thread(target=optimize_while_draining)
    maintainer.start()
    try:
        wait_for(lambda: sql("SELECT count(*) FROM lamplighter.job_history")[0][0] == 5000, timeout=120,
                 message="5,000 jobs drained")
    finally:
        stop.set()
        maintainer.join(timeout=60)
    [(first, last, longest_gap)] = sql(
        "SELECT extract(epoch FROM min(finished_at)), extract(epoch FROM max(finished_at)), "
        "       max(gap) FROM (SELECT finished_at, extract(epoch FROM finished_at - lag(finished_at) "
        "                          OVER (ORDER BY finished_at)) AS gap FROM lamplighter.job_history) g")
    during = [(a, b) for a, b, r in runs if "dramatiq.queue_claim_unkeyed_idx" in r["reindexed"]
              and a < float(last) and b > float(first)]
    assert during, f"no run rebuilt the queue's indexes while it drained: {[(a, b, r['gave_up']) for a, b, r in runs]}"
    assert float(longest_gap) <= 1.0, f"the worker paused {float(longest_gap):.2f} s"
