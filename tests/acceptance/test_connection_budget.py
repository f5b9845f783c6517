"""The connection budget `lamplighter config --formation` computes (console/formation.py) is what a
worker process really opens: measured in pg_stat_activity with every thread's job holding its
database connection."""
import pytest

from console import formation
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance


def test_a_worker_process_opens_what_the_budget_says_and_no_more(database_url, sql, worker_processes):
    queues, threads = ("tests-db", "tests-record"), 4
    expected = formation.worker_process(threads, listen=True)  # one claim connection for both queues
    worker_processes.start("budget", database_url, sql, threads=threads, queues=queues)
    for _ in range(3 * threads):
        sql("SELECT lamplighter.enqueue('tests.query', '{\"seconds\": 0.3}'::jsonb)")
    seen = []

    def opened():
        [(count,)] = sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND application_name LIKE 'lamplighter%%'")
        seen.append(count)
        return count >= expected

    wait_for(opened, timeout=30, interval=0.02, message=f"the worker's {expected} connections")
    wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE state <> 'completed'") == [(0,)],
             timeout=30, message="the jobs done")
    opened()
    assert max(seen) == expected, seen
