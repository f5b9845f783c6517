"""What each process kind's connections tell PostgreSQL (application_name, statement timeout), the
session settings SET after connecting rather than sent as the `options` startup parameter, a
statement past the web's timeout answered with a clear error, and the dashboard's read pages on
a read replica while its actions write to the primary (storage/connection.py)."""
import uuid

import peewee
import psycopg2
import pytest

from storage import connection, schema
from tests.conftest import _admin, use_database, with_database
from tests.dashboard_users import create_user, csrf_of, signed_in
from tests.integration.test_api_jobs import _fail_attempt
from tests.web_api import ApiServer

TIMEOUTS = {"LAMPLIGHTER_STATEMENT_TIMEOUT_WEB": "7", "LAMPLIGHTER_STATEMENT_TIMEOUT_SCHEDULER": "9",
            "LAMPLIGHTER_STATEMENT_TIMEOUT_WORKER": "11.5"}
SHOWN = {"web": "7s", "scheduler": "9s", "worker": "11500ms", "release": "0", "cli": "0"}


@pytest.fixture(autouse=True)
def process_kind():
    """Tests here change the process kind; the next test of this process starts as the CLI."""
    yield connection.set_process_kind
    connection.set_process_kind("cli")


def _session(cursor) -> tuple[str, str, int]:
    cursor.execute("SELECT current_setting('application_name'), current_setting('statement_timeout'), "
                   "pg_backend_pid()")
    return cursor.fetchone()


@pytest.mark.parametrize("kind", ["release", "web", "worker", "scheduler", "cli"])
def test_each_process_kind_names_its_connections_and_sets_its_statement_timeout(database_url, sql, process_kind,
                                                                                 kind):
    use_database(database_url, **TIMEOUTS)
    process_kind(kind)
    name, timeout, pid = _session(connection.init_database().cursor())
    assert (name, timeout) == (f"lamplighter-{kind}", SHOWN[kind])
    # Another session sees who holds the connection.
    assert sql("SELECT application_name FROM pg_stat_activity WHERE pid = %s", (pid,)) == [(f"lamplighter-{kind}",)]
    raw = connection.raw_connection("finisher")
    try:
        assert raw.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE  # the SET is committed
        assert _session(raw.cursor())[:2] == (f"lamplighter-{kind}/finisher", SHOWN[kind])
    finally:
        raw.close()


def test_the_defaults_bound_web_and_scheduler_statements_and_leave_workers_to_their_time_limits(database_url):
    use_database(database_url)
    shown = {}
    for kind in ("web", "scheduler", "worker"):
        connection.set_process_kind(kind)
        shown[kind] = _session(connection.init_database().cursor())[1]
    assert shown == {"web": "30s", "scheduler": "1min", "worker": "0"}


def test_application_names_stay_within_postgresqls_limit(database_url):
    connection.set_process_kind("scheduler")
    raw = connection.raw_connection("claim:" + "q" * 100)
    try:
        name = _session(raw.cursor())[0]
    finally:
        raw.close()
    assert name == ("lamplighter-scheduler/claim:" + "q" * 100)[:63]


def test_the_clock_offset_is_set_after_connecting_not_sent_as_options(database_url):
    use_database(database_url, LAMPLIGHTER_CLOCK_OFFSET="86400.123456")
    assert "options" not in connection.connect_kwargs(connection.application_name())
    assert "options" not in connection.database.connect_params
    query = "SELECT extract(epoch FROM lamplighter.now() - now())::float8"
    [(shift,)] = connection.init_database().execute_sql(query).fetchall()
    assert shift == pytest.approx(86400.123456, abs=1e-6)  # every digit: `:g` kept six
    raw = connection.raw_connection("tests")
    try:
        cursor = raw.cursor()
        cursor.execute(query)
        assert cursor.fetchone()[0] == pytest.approx(86400.123456, abs=1e-6)
    finally:
        raw.close()


def test_a_statement_past_the_timeout_is_cancelled_with_57014(database_url):
    use_database(database_url, LAMPLIGHTER_STATEMENT_TIMEOUT_WEB="0.2")
    connection.set_process_kind("web")
    db = connection.init_database()
    with pytest.raises(peewee.OperationalError) as caught:
        db.execute_sql("SELECT pg_sleep(60)")  # without the timeout: a minute, then the assertion fails
    assert caught.value.orig.pgcode == "57014"
    assert connection.statement_timed_out(caught.value)
    assert "LAMPLIGHTER_STATEMENT_TIMEOUT_WEB" in connection.timeout_message()
    assert db.execute_sql("SELECT 1").fetchone() == (1,)  # the session survives its cancelled statement


def test_the_api_and_dashboard_answer_a_statement_timeout_with_a_503_that_says_so(database_url):
    use_database(database_url, LAMPLIGHTER_STATEMENT_TIMEOUT_WEB="0.3")
    connection.set_process_kind("web")
    api = ApiServer().start()
    blocker = psycopg2.connect(database_url)
    try:
        token = api.token("read")
        browser = signed_in(api.url, create_user("viewer"))
        # A migration's ACCESS EXCLUSIVE lock on the queue: the listing waits until its timeout.
        blocker.cursor().execute("LOCK TABLE dramatiq.queue IN ACCESS EXCLUSIVE MODE")
        answer = api.call("GET", "/api/jobs", token)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "statement_timeout"
        assert "0.3 s statement timeout (LAMPLIGHTER_STATEMENT_TIMEOUT_WEB)" in answer.json()["message"]
        page = browser.get(api.url + "/dashboard/jobs", timeout=30)
        assert page.status_code == 503 and "LAMPLIGHTER_STATEMENT_TIMEOUT_WEB" in page.text
        blocker.rollback()
        assert api.call("GET", "/api/jobs", token).status_code == 200  # the pool's connections still serve
    finally:
        blocker.close()
        api.stop()


@pytest.fixture
def replica_url(server_url, database_url):
    """A second database on the same server, migrated: it stands in for a read replica."""
    name = f"lamplighter_r_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    use_database(url)
    schema.migrate()
    use_database(database_url)
    yield url
    connection.reset()
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def test_the_dashboards_read_pages_read_the_replica_while_actions_write_the_primary(database_url, replica_url, sql):
    from actors import maintenance

    use_database(replica_url)
    on_replica = maintenance.ping.send(note="only on the replica").message_id
    use_database(database_url)
    on_primary = maintenance.ping.send(note="only on the primary").message_id
    _fail_attempt(sql, on_primary, "boom")
    email = create_user("operator")  # users and sessions live on the primary only

    use_database(database_url, LAMPLIGHTER_READ_DATABASE_URL=replica_url)
    api = ApiServer().start()
    try:
        browser = signed_in(api.url, email)
        listing = browser.get(api.url + "/dashboard/jobs", timeout=30).text
        assert on_replica in listing and on_primary not in listing
        assert browser.get(f"{api.url}/dashboard/jobs/{on_replica}", timeout=30).status_code == 200
        assert browser.get(f"{api.url}/dashboard/jobs/{on_primary}", timeout=30).status_code == 404
        for page in ("/dashboard/", "/dashboard/workers"):  # read-only connections: a write would fail them
            assert browser.get(api.url + page, timeout=30).status_code == 200, page
        queues = browser.get(api.url + "/dashboard/queues", timeout=30)
        assert queues.status_code == 200
        # The API is not routed: it reads the primary.
        listed = api.call("GET", "/api/jobs", api.token("read")).json()["jobs"]
        assert [job["id"] for job in listed] == [on_primary]
        # An action writes the primary: the queue is paused there, not on the replica.
        answer = browser.post(f"{api.url}/dashboard/queues/maintenance/pause",
                              data={"csrf": csrf_of(queues.text), "confirmed": "yes"}, allow_redirects=False,
                              timeout=30)
        assert answer.status_code == 303, answer.text
        assert sql("SELECT paused FROM lamplighter.queues WHERE name = 'maintenance'") == [(True,)]
        replica = psycopg2.connect(replica_url)
        try:
            cursor = replica.cursor()
            cursor.execute("SELECT count(*) FROM lamplighter.queues")
            assert cursor.fetchone() == (0,)
            cursor.execute("SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()")
            assert {name for (name,) in cursor.fetchall()} == {"lamplighter-cli/read"}
        finally:
            replica.close()
    finally:
        api.stop()


def test_a_write_through_the_read_database_is_refused(database_url, replica_url):
    use_database(database_url, LAMPLIGHTER_READ_DATABASE_URL=replica_url)
    with connection.replica_reads():
        db = connection.init_database()
        assert db is connection.read_database
        with pytest.raises(peewee.InternalError) as caught:
            db.execute_sql("INSERT INTO lamplighter.cache (key, value) VALUES ('k', '1'::jsonb)")
    assert caught.value.orig.pgcode == "25006"  # read_only_sql_transaction, as on a standby
    assert connection.init_database() is connection.database
