"""Per-actor outcome counters and run-time histograms (lamplighter.job_counters), kept by the
finish statement itself so that /metrics never recomputes them from a pruned history; the rescue
of lost attempts (lamplighter.job_rescue_v2) counts them too."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0012_job_counters.sql")
