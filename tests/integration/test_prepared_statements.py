"""Hot queries run as server-side prepared statements; a lost one is prepared again, and
LAMPLIGHTER_PREPARED_STATEMENTS=false (transaction-mode poolers) sends plain text."""
import dataclasses

import psycopg2
import pytest

import actors
from storage import connection
from storage import queries as queries_module
from tests.conftest import use_database, wait_for


def _prepared(conn) -> set[str]:
    cur = conn.cursor()
    cur.execute("SELECT name FROM pg_prepared_statements")
    return {row[0] for row in cur.fetchall()}


def test_a_named_query_is_prepared_once_per_connection(database_url):
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    statement = queries_module.prepared_statement("jobs", "job_get")
    assert statement.name not in _prepared(conn)
    for _ in range(3):
        queries_module.execute(conn.cursor(), "jobs", "job_get", {"message_id": "00000000-0000-0000-0000-000000000000"})
    assert statement.name in _prepared(conn)
    conn.close()


def test_a_lost_prepared_statement_is_reported_then_prepared_again(database_url):
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    params = {"message_id": "00000000-0000-0000-0000-000000000000"}
    queries_module.execute(conn.cursor(), "jobs", "job_get", params)
    conn.cursor().execute("DEALLOCATE ALL")  # what a pooler's server_reset_query does
    with pytest.raises(queries_module.StalePreparedStatement):
        queries_module.execute(conn.cursor(), "jobs", "job_get", params)
    assert queries_module.execute(conn.cursor(), "jobs", "job_get", params).fetchall() == []
    conn.close()


def test_send_survives_a_lost_prepared_statement_on_its_connection(broker, sql):
    actors.maintenance.ping.send(note="first")
    connection.init_database().execute_sql("DEALLOCATE ALL")
    actors.maintenance.ping.send(note="second")  # retried once, prepared again
    assert sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'queued'") == [(2,)]


def test_comments_do_not_count_as_parameters():
    # job_claim_batch's comment names %(limit)s before the body does; numbering follows the body.
    statement = queries_module.prepared_statement("jobs", "job_claim_batch")
    assert statement.execute.endswith("(%(queue)s, %(worker_id)s, %(limit)s, %(token)s)")
    assert "--" not in statement.prepare


def _finisher_statements(broker) -> set[str]:
    conn = broker.finisher.conn.get()
    with conn:  # the finisher is idle once everything is done; psycopg2 serialises anyway
        return _prepared(conn)


def _plan_modes(broker) -> dict[str, str]:
    """plan_cache_mode of the finisher's connection and of the claim connection every consumer
    shares."""
    modes = {}
    conn = broker.finisher.conn.get()
    with conn:
        cur = conn.cursor()
        cur.execute("SHOW plan_cache_mode")
        modes["finisher"] = cur.fetchone()[0]
    with broker.claim_conn as conn:
        cur = conn.cursor()
        cur.execute("SHOW plan_cache_mode")
        modes["claim"] = cur.fetchone()[0]
    return modes


def _drain(broker, run_worker, sql, count: int) -> None:
    for i in range(count):
        actors.maintenance.ping.send(note=str(i))
    run_worker(threads=2)
    wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE state = 'completed'") == [(count,)],
             message=f"{count} completed")


def test_the_worker_prepares_its_finish_and_claim(broker, run_worker, sql):
    _drain(broker, run_worker, sql, 30)
    assert "lamplighter_jobs_job_finish_many" in _finisher_statements(broker)
    # Planned once per connection, not on every claim (engine/connection.py, GENERIC_PLANS).
    modes = _plan_modes(broker)
    assert set(modes) == {"finisher", "claim"} and set(modes.values()) == {"force_generic_plan"}, modes
    sender = connection.init_database().connection()
    assert "lamplighter_jobs_job_insert_one" in _prepared(sender)


def test_workers_and_senders_work_with_prepared_statements_off(database_url, broker, run_worker, sql):
    broker.settings = use_database(database_url, LAMPLIGHTER_PREPARED_STATEMENTS="false")
    _drain(broker, run_worker, sql, 30)
    assert _finisher_statements(broker) == set()
    assert _prepared(connection.init_database().connection()) == set()
    # No session setting either: behind a transaction-mode pooler it would reach other clients.
    assert set(_plan_modes(broker).values()) == {"auto"}
