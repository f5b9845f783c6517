"""Migration 0012 starts the outcome counters from the history retained at the upgrade, once:
run again (the release step re-runs migrations' SQL idempotently), it adds nothing."""
from storage import connection
from storage.migrations import run_sql_file


def test_counters_start_from_the_retained_history_once(database_url, sql):
    sql("INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, finished_at, duration_ms, outcome) "
        "SELECT gen_random_uuid(), 1, 'old.job', 'default', now(), ms, outcome "
        "FROM (VALUES (2.0, 'completed'), (40.0, 'completed'), (NULL, 'lost'), (700.0, 'failed')) AS v(ms, outcome)")
    run_sql_file(connection.init_database(), "0012_job_counters.sql")
    expected = [("completed", 0, 1, 0.002), ("completed", 3, 1, 0.04), ("failed", 7, 1, 0.7), ("lost", 0, 1, 0.0)]
    counted = "SELECT outcome, bucket, attempts::int, run_seconds FROM lamplighter.job_counters ORDER BY 1, 2"
    assert sql(counted) == expected
    run_sql_file(connection.init_database(), "0012_job_counters.sql")
    assert sql(counted) == expected
