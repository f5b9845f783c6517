"""Managed-account creation against a real PostgreSQL and a local fake Zitadel (pytest-httpserver)
that answers like Zitadel's v2 API, errors included: success, 503 then success on schedule, 400,
409 reconcile, 429 with Retry-After, timeout, two sweeps at once, rows without (or with a
non-encrypted) password, secrets kept out of logs, history and job arguments."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from cryptography.fernet import Fernet
from werkzeug import Response

import actors
from actors.accounts import provider_settings
from actors.zitadel import ZitadelClient
from domain import accounts
from storage import accounts as account_rows
from storage import encryption, jobs, logs
from storage.queries import queries
from tests.conftest import DatabaseClock, lamplighter_env, use_database, wait_for
from tests.smtp_server import smtp_server  # noqa: F401  (fixture)

PASSWORD = "Tr0ub4dor&3-never-logged"
PAT = "pat-secret-123"
ORG = "org-1"


class FakeZitadel:
    """Zitadel's user service (v2) and user grants, in memory. ``script`` holds answers to give
    to the next user creations instead of the real behaviour; ``hold`` makes a call hang."""

    def __init__(self, server):
        self.users: dict[str, dict] = {}
        self.grants: dict[str, list] = {}
        self.creates: list[dict] = []
        self.requests: list[tuple[str, str, dict]] = []  # method, path, headers
        self.script: list = []
        self.hold = threading.Event()
        self.lock = threading.Lock()
        server.expect_request(re.compile(r"^/v2/users/human$"), method="POST").respond_with_handler(self.create)
        server.expect_request(re.compile(r"^/v2/users/[^/]+$"), method="GET").respond_with_handler(self.get)
        server.expect_request(re.compile(r"^/management/v1/users/[^/]+/grants$"),
                              method="POST").respond_with_handler(self.grant)

    @staticmethod
    def error(status: int, code: int, message: str, headers=None) -> Response:
        body = {"code": code, "message": message,
                "details": [{"@type": "type.googleapis.com/zitadel.v1.ErrorDetail", "id": "FAKE-1",
                             "message": message}]}
        return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")

    def _record(self, request):
        self.requests.append((request.method, request.path, dict(request.headers)))

    def create(self, request):
        with self.lock:
            self._record(request)
            body = request.get_json()
            self.creates.append(body)
            if self.script:
                answer = self.script.pop(0)
                if answer == "hang":
                    self.hold.wait(10)
                    return self.error(503, 14, "too late")
                return answer if isinstance(answer, Response) else answer(body)
            if not re.fullmatch(r"[A-Za-z0-9._@-]+", body.get("username", "")):
                return self.error(400, 3, "Username is invalid (V2-bAqE2)")
            if body["userId"] in self.users:
                return self.error(409, 6, "User already exists (COMMAND-k2unb)")
            self.users[body["userId"]] = {"userId": body["userId"], "username": body["username"],
                                          "details": {"resourceOwner": body["organization"]["orgId"]},
                                          "human": {"profile": body["profile"], "email": body["email"]}}
            return Response(json.dumps({"userId": body["userId"], "details": {"resourceOwner": ORG}}), status=201,
                            content_type="application/json")

    def get(self, request):
        with self.lock:
            self._record(request)
            user = self.users.get(request.path.rsplit("/", 1)[1])
            if user is None:
                return self.error(404, 5, "User could not be found (QUERY-Dfbg2)")
            return Response(json.dumps({"details": {}, "user": user}), content_type="application/json")

    def grant(self, request):
        with self.lock:
            self._record(request)
            user_id = request.path.split("/")[-2]
            if user_id in self.grants:
                return self.error(409, 6, "User grant already exists (COMMAND-Fsf3s)")
            self.grants[user_id] = [request.headers.get("x-zitadel-orgid"), request.get_json()]
            return Response(json.dumps({"userGrantId": "g-" + user_id}), content_type="application/json")

    def create_calls(self, user_id: str) -> int:
        return sum(1 for body in self.creates if body["userId"] == user_id)


@pytest.fixture
def zitadel(httpserver):
    fake = FakeZitadel(httpserver)
    yield fake
    fake.hold.set()


@pytest.fixture
def configured(database_url, httpserver):
    """Settings for this test: a fresh encryption key and Zitadel at the fake's address."""
    settings = use_database(
        database_url, LAMPLIGHTER_ENCRYPTION_KEYS=f"t1:{Fernet.generate_key().decode()}",
        ZITADEL_URL=httpserver.url_for("/").rstrip("/"), ZITADEL_PAT=PAT, ZITADEL_ORG_ID=ORG,
        ZITADEL_PROJECT_ID="proj-1", ZITADEL_TIMEOUT="0.5", ZITADEL_USER_ID_PREFIX="ll-test-",
        LAMPLIGHTER_ACCOUNT_PROCESSING_TIMEOUT="120")
    encryption.reset()
    yield settings
    encryption.reset()


@pytest.fixture
def clock(db_clock):
    # The sweep decides by the database's clock (lamplighter.now()); tests move it, not wait.
    return db_clock


def run_sweep(settings, **kwargs):
    with ZitadelClient(settings.zitadel_url, settings.zitadel_pat, timeout=settings.zitadel_timeout) as client:
        return accounts.sweep(client, provider_settings(settings),
                              processing_timeout=settings.account_processing_timeout, **kwargs)


def new_request(clock, username="anna.berg", password=PASSWORD, **overrides):
    values = dict(organization_id="family-7", username=username, given_name="Anna", family_name="Berg",
                  email=f"{username}@example.org", role="member", created_by="admin-3", password=password)
    values.update(overrides)
    return accounts.request_account(clock, **values)


def user_id(request_id: int) -> str:
    return f"ll-test-{request_id}"


def test_success_creates_the_user_grants_the_role_and_erases_the_password(configured, zitadel, clock, sql):
    request_id = new_request(clock)
    [(stored,)] = sql("SELECT encrypted_password FROM lamplighter.queued_managed_account_creations")
    assert stored.startswith("enc:v1:t1:") and PASSWORD not in stored

    assert run_sweep(configured) == {"released": 0, "completed": 1, "retry_scheduled": 0, "failed": 0,
                                            "superseded": 0}

    row = account_rows.get(request_id)
    assert (row.status, row.retry_count, row.idp_user_id, row.encrypted_password) == \
        ("completed", 0, user_id(request_id), None)
    [body] = zitadel.creates
    assert body == {"userId": user_id(request_id), "organization": {"orgId": ORG}, "username": "anna.berg",
                    "profile": {"givenName": "Anna", "familyName": "Berg"},
                    "email": {"email": "anna.berg@example.org"},
                    "password": {"password": PASSWORD, "changeRequired": True}}
    assert zitadel.requests[0][2]["Authorization"] == f"Bearer {PAT}"
    assert zitadel.grants[user_id(request_id)] == [ORG, {"projectId": "proj-1", "roleKeys": ["member"]}]
    # Nothing due any more: the next sweeps call nobody.
    clock.advance(86_400)
    assert run_sweep(configured)["completed"] == 0
    assert len(zitadel.creates) == 1


def test_503_twice_then_success_follows_the_schedule_to_the_second(configured, zitadel, clock):
    unavailable = FakeZitadel.error(503, 14, "Service unavailable")
    zitadel.script = [unavailable, unavailable]
    request_id = new_request(clock)

    assert run_sweep(configured)["retry_scheduled"] == 1
    row = account_rows.get(request_id)
    # updated_at is the database's now when the failure was recorded, in the same statement.
    assert (row.status, row.retry_count, row.next_retry_at) == ("pending", 1, row.updated_at + timedelta(minutes=1))
    assert row.last_error_message == "Zitadel 503 unavailable: Service unavailable"
    assert row.encrypted_password is not None  # kept for the retry

    clock.set(row.next_retry_at - timedelta(seconds=1))
    assert run_sweep(configured)["retry_scheduled"] == 0  # not due yet
    assert len(zitadel.creates) == 1
    clock.set(row.next_retry_at)
    run_sweep(configured)
    row = account_rows.get(request_id)
    assert (row.status, row.retry_count, row.next_retry_at) == ("pending", 2, row.updated_at + timedelta(minutes=5))

    clock.set(row.next_retry_at - timedelta(seconds=1))
    run_sweep(configured)
    assert len(zitadel.creates) == 2
    clock.set(row.next_retry_at)
    assert run_sweep(configured)["completed"] == 1
    row = account_rows.get(request_id)
    assert (row.status, row.retry_count, row.encrypted_password) == ("completed", 2, None)
    assert zitadel.create_calls(user_id(request_id)) == 3


def test_fifth_failed_retry_fails_the_request_and_notifies_the_admin(configured, zitadel, clock):
    zitadel.script = [FakeZitadel.error(502, 14, "Bad gateway")] * 6
    request_id = new_request(clock)
    for retry_count, delay in enumerate([60, 300, 900, 3600, 14400], start=1):
        run_sweep(configured)
        row = account_rows.get(request_id)
        assert (row.status, row.retry_count, row.next_retry_at) == \
            ("pending", retry_count, row.updated_at + timedelta(seconds=delay))
        clock.set(row.next_retry_at)
    assert run_sweep(configured)["failed"] == 1

    row = account_rows.get(request_id)
    assert (row.status, row.retry_count, row.encrypted_password) == ("failed", 5, None)
    assert row.last_error_message == "gave up after 5 retries; last error: Zitadel 502 unavailable: Bad gateway"
    assert len(zitadel.creates) == 6
    [notice] = account_rows.notifications("admin-3")
    assert notice.request_id == request_id and notice.kind == "creation_failed"
    assert "'anna.berg'" in notice.message and "gave up after 5 retries" in notice.message


def test_the_sweep_goes_by_the_database_clock_not_the_process_clock(configured, zitadel, clock, sql):
    """The database's clock runs two hours ahead of this process's. A request due in one hour by
    the process's clock is due by the database's, so the sweep takes it; its next try, its claim
    and the stuck cutoff are all reckoned from the database's now."""
    zitadel.script = [FakeZitadel.error(503, 14, "Service unavailable")]
    [(request_id,)] = sql(
        "INSERT INTO lamplighter.queued_managed_account_creations "
        "(organization_id, username, given_name, family_name, email, role, created_by, next_retry_at) "
        "VALUES ('family-7', 'ida', 'Ida', 'Berg', 'ida@example.org', 'member', 'admin-3', %s) RETURNING id",
        (datetime.now(timezone.utc) + timedelta(hours=1),))
    clock.advance(2 * 3600)
    sweep = actors.accounts.retry_managed_account_creations.fn

    assert sweep()["retry_scheduled"] == 1
    row = account_rows.get(request_id)
    assert row.updated_at > datetime.now(timezone.utc) + timedelta(hours=1)  # the database's now
    assert row.next_retry_at == row.updated_at + timedelta(minutes=1)

    # A worker dies mid-call: its claim is stuck once the database's clock says so.
    clock.set(row.next_retry_at)
    claimed = account_rows.claim_next()
    assert claimed.id == request_id and claimed.claimed_at > datetime.now(timezone.utc) + timedelta(hours=1)
    clock.set(claimed.claimed_at + timedelta(seconds=119))
    assert sweep()["released"] == 0
    clock.set(claimed.claimed_at + timedelta(seconds=121))
    assert sweep()["released"] == 1
    assert account_rows.get(request_id).retry_count == 2


def test_400_invalid_username_fails_at_once_without_retry(configured, zitadel, clock):
    request_id = new_request(clock, username="anna berg!", email="anna@example.org")
    assert run_sweep(configured)["failed"] == 1
    row = account_rows.get(request_id)
    assert (row.status, row.retry_count, row.encrypted_password) == ("failed", 0, None)
    assert row.last_error_message == "Zitadel 400 invalid_argument: Username is invalid (V2-bAqE2)"
    [notice] = account_rows.notifications("admin-3")
    assert "Username is invalid" in notice.message
    clock.advance(5 * 3600)
    run_sweep(configured)
    assert len(zitadel.creates) == 1


@pytest.mark.parametrize("status,code", [(401, 16), (403, 7), (404, 5)])
def test_other_permanent_errors_fail_at_once(configured, zitadel, clock, status, code):
    zitadel.script = [FakeZitadel.error(status, code, "no")]
    request_id = new_request(clock)
    run_sweep(configured)
    row = account_rows.get(request_id)
    assert (row.status, row.retry_count) == ("failed", 0)
    assert row.last_error_message.startswith(f"Zitadel {status} ")


def test_crash_after_zitadel_created_the_user_reconciles_on_409(configured, zitadel, clock):
    request_id = new_request(clock)
    # A worker claims the request, Zitadel creates the user, and the worker dies before recording it.
    claimed = account_rows.claim_next()
    with ZitadelClient(configured.zitadel_url, PAT, timeout=1) as client:
        client.create_human_user(accounts.HumanUser(
            user_id=user_id(request_id), organization_id=ORG, username="anna.berg", given_name="Anna",
            family_name="Berg", email="anna.berg@example.org"))
    assert claimed.status == "processing" and account_rows.get(request_id).status == "processing"

    clock.set(claimed.claimed_at + timedelta(seconds=119))
    assert run_sweep(configured)["released"] == 0  # within the processing timeout
    clock.set(claimed.claimed_at + timedelta(seconds=121))
    assert run_sweep(configured)["released"] == 1
    row = account_rows.get(request_id)
    assert (row.status, row.retry_count) == ("pending", 1)
    assert row.last_error_message == "processing took longer than 120 s (worker lost?)"

    clock.set(row.next_retry_at)
    assert run_sweep(configured)["completed"] == 1
    row = account_rows.get(request_id)
    assert (row.status, row.idp_user_id, row.encrypted_password) == ("completed", user_id(request_id), None)
    assert len(zitadel.users) == 1
    assert [m for m, p, _ in zitadel.requests] == ["POST", "POST", "GET", "POST"]  # create, create 409, get, grant


def test_409_for_someone_else_is_not_linked(configured, zitadel, clock):
    # Our derived id taken by a user with another username (a second deployment with the same prefix).
    taken = new_request(clock, username="anna.berg")
    zitadel.users[user_id(taken)] = {"userId": user_id(taken), "username": "someone.else",
                                     "details": {"resourceOwner": ORG}}
    run_sweep(configured)
    row = account_rows.get(taken)
    assert row.status == "failed"
    assert row.last_error_message.startswith(
        f"user id {user_id(taken)} already exists at the identity provider for another account "
        f"(organization {ORG}, username 'someone.else'); not linked.")
    # A 409 with no user under our id: the username is taken by some other account.
    clash = new_request(clock, username="bob.berg")
    zitadel.script = [FakeZitadel.error(409, 6, "User already exists (COMMAND-k2unb)")]
    run_sweep(configured)
    row = account_rows.get(clash)
    assert row.status == "failed"
    assert row.last_error_message == (
        "Zitadel 409 already_exists: User already exists (COMMAND-k2unb) — and no user with our id "
        f"{user_id(clash)} exists: the username or e-mail is taken by another account")
    assert zitadel.users.keys() == {user_id(taken)}


def test_429_honours_retry_after_but_never_shortens_the_schedule(configured, zitadel, clock):
    zitadel.script = [FakeZitadel.error(429, 8, "Too many requests", headers={"Retry-After": "600"}),
                      FakeZitadel.error(429, 8, "Too many requests", headers={"Retry-After": "5"})]
    slow = new_request(clock, username="slow")
    quick = new_request(clock, username="quick")
    run_sweep(configured)
    slow_row, quick_row = account_rows.get(slow), account_rows.get(quick)
    assert slow_row.next_retry_at == slow_row.updated_at + timedelta(seconds=600)
    assert quick_row.next_retry_at == quick_row.updated_at + timedelta(seconds=60)
    assert slow_row.last_error_message == "Zitadel 429 resource_exhausted: Too many requests"
    clock.set(quick_row.next_retry_at)
    run_sweep(configured)
    assert account_rows.get(quick).status == "completed"
    assert account_rows.get(slow).status == "pending"
    clock.set(slow_row.next_retry_at)
    run_sweep(configured)
    assert account_rows.get(slow).status == "completed"


def test_timeout_is_retried(configured, zitadel, clock):
    zitadel.script = ["hang"]
    request_id = new_request(clock)
    run_sweep(configured)
    zitadel.hold.set()
    row = account_rows.get(request_id)
    assert (row.status, row.retry_count) == ("pending", 1)
    assert row.last_error_message == "Zitadel did not answer POST /v2/users/human within 0.5 s"
    clock.set(row.next_retry_at)
    run_sweep(configured)
    assert account_rows.get(request_id).status == "completed"
    assert len(zitadel.users) == 1


def test_two_sweeps_at_once_never_call_zitadel_twice_for_one_request(configured, zitadel, clock):
    ids = [new_request(clock, username=f"user{i}") for i in range(40)]
    start = threading.Barrier(2)
    results, errors = [], []

    def worker():
        # peewee keeps one connection per thread: two sweeps, two connections.
        try:
            start.wait()
            results.append(run_sweep(configured))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r["completed"] for r in results) == 40
    assert all(zitadel.create_calls(user_id(i)) == 1 for i in ids)
    assert len(zitadel.creates) == 40
    assert {account_rows.get(i).status for i in ids} == {"completed"}


def test_sql_inserted_row_without_password_is_created_without_one(configured, zitadel, clock, sql):
    [(request_id,)] = sql(
        "INSERT INTO lamplighter.queued_managed_account_creations "
        "(organization_id, username, given_name, family_name, email, role, created_by) "
        "VALUES ('family-7', 'carl', 'Carl', 'Berg', 'carl@example.org', 'child', 'admin-3') RETURNING id")
    assert run_sweep(configured)["completed"] == 1
    [body] = zitadel.creates
    assert "password" not in body
    assert zitadel.grants[user_id(request_id)][1]["roleKeys"] == ["child"]


def test_a_password_that_is_not_encrypted_is_refused_and_never_sent(configured, zitadel, clock, sql):
    [(request_id,)] = sql(
        "INSERT INTO lamplighter.queued_managed_account_creations "
        "(organization_id, username, given_name, family_name, email, role, created_by, encrypted_password) "
        "VALUES ('family-7', 'dora', 'Dora', 'Berg', 'dora@example.org', 'member', 'admin-3', 'hunter2') "
        "RETURNING id")
    assert run_sweep(configured)["failed"] == 1
    row = account_rows.get(request_id)
    assert (row.status, row.encrypted_password) == ("failed", None)
    assert row.last_error_message == accounts.NOT_ENCRYPTED
    assert zitadel.requests == []
    assert [n.request_id for n in account_rows.notifications("admin-3")] == [request_id]


def test_rotation_re_encrypts_queued_passwords(configured, zitadel, clock, sql, database_url):
    old_spec = configured.encryption_keys
    request_id = new_request(clock)
    new_key = Fernet.generate_key().decode()
    use_database(database_url, LAMPLIGHTER_ENCRYPTION_KEYS=f"t2:{new_key},{old_spec}",
                 ZITADEL_URL=configured.zitadel_url, ZITADEL_PAT=PAT, ZITADEL_ORG_ID=ORG,
                 ZITADEL_USER_ID_PREFIX="ll-test-")
    encryption.reset()
    counts = actors.maintenance.rotate_encryption_keys.fn()
    assert counts["lamplighter.queued_managed_account_creations.encrypted_password"] == 1
    [(stored,)] = sql("SELECT encrypted_password FROM lamplighter.queued_managed_account_creations")
    assert stored.startswith("enc:v1:t2:")
    # Only the new key from now on: the request still goes through with its password.
    settings = use_database(database_url, LAMPLIGHTER_ENCRYPTION_KEYS=f"t2:{new_key}",
                            ZITADEL_URL=configured.zitadel_url, ZITADEL_PAT=PAT, ZITADEL_ORG_ID=ORG,
                            ZITADEL_USER_ID_PREFIX="ll-test-")
    encryption.reset()
    run_sweep(settings)
    assert account_rows.get(request_id).status == "completed"
    assert zitadel.creates[0]["password"]["password"] == PASSWORD


def test_unconfigured_sweep_is_quiet_until_requests_wait(database_url, sql):
    sweep = actors.accounts.retry_managed_account_creations.fn
    assert sweep() == {"released": 0, "completed": 0, "retry_scheduled": 0, "failed": 0, "superseded": 0}
    sql("INSERT INTO lamplighter.queued_managed_account_creations "
        "(organization_id, username, given_name, family_name, email, role, created_by) "
        "VALUES ('f', 'erin', 'Erin', 'Berg', 'erin@example.org', 'member', 'admin-3')")
    with pytest.raises(accounts.AccountsNotConfigured,
                       match=r"^1 managed-account request\(s\) are due but ZITADEL_URL, ZITADEL_PAT, "
                             r"ZITADEL_ORG_ID are not set$"):
        sweep()


def test_password_never_reaches_logs_history_or_job_arguments(configured, zitadel, broker, run_worker, sql):
    """The whole path through a real worker: one request succeeds, one gets a 503 whose message
    echoes the password (a misbehaving proxy), one fails for good."""
    stream = io.StringIO()
    logs.configure(log_format="json", level="DEBUG", stream=stream)
    try:
        zitadel.script = [lambda body: FakeZitadel.error(503, 14, f"upstream choked on {json.dumps(body)}")]
        clock = DatabaseClock()
        echoed = new_request(clock, username="echo")
        created = new_request(clock, username="fine")
        failed = new_request(clock, username="not valid", email="nv@example.org")
        run_worker()
        message = actors.accounts.retry_managed_account_creations.send()
        wait_for(lambda: jobs.get(message.message_id).state in ("completed", "dead"), message="sweep finished")
        assert jobs.get(message.message_id).state == "completed", jobs.get(message.message_id).last_error
        job = jobs.get(message.message_id)
        assert job.attempts[0].result_summary == {"released": 0, "completed": 1, "retry_scheduled": 1, "failed": 1,
                                                  "superseded": 0}
        assert account_rows.get(created).status == "completed"
        assert account_rows.get(failed).status == "failed"
        echo = account_rows.get(echoed)
        assert echo.status == "pending" and "[REDACTED]" in echo.last_error_message
        assert sum(1 for body in zitadel.creates if body.get("password", {}).get("password") == PASSWORD) == 3
    finally:
        logs.configure(log_format="json", level="INFO")
    captured = stream.getvalue()
    assert "managed_account_created" in captured and "managed_account_retry_scheduled" in captured
    assert PASSWORD not in captured and PAT not in captured
    everywhere = sql("SELECT string_agg(t::text, ' ') FROM dramatiq.queue t")[0][0] + \
        sql("SELECT string_agg(t::text, ' ') FROM lamplighter.job_history t")[0][0] + \
        sql("SELECT string_agg(t::text, ' ') FROM lamplighter.queued_managed_account_creations t")[0][0] + \
        sql("SELECT string_agg(t::text, ' ') FROM lamplighter.managed_account_notifications t")[0][0]
    assert PASSWORD not in everywhere
    assert job.args == [] and job.kwargs == {}


def test_claim_uses_the_due_index_on_a_large_table(database_url, sql):
    sql("INSERT INTO lamplighter.queued_managed_account_creations "
        "(organization_id, username, given_name, family_name, email, role, created_by, status, idp_user_id) "
        "SELECT 'f', 'u' || g, 'G', 'F', 'u' || g || '@example.org', 'member', 'a', 'completed', 'x' || g "
        "FROM generate_series(1, 100000) g")
    sql("INSERT INTO lamplighter.queued_managed_account_creations "
        "(organization_id, username, given_name, family_name, email, role, created_by) "
        "SELECT 'f', 'p' || g, 'G', 'F', 'p' || g || '@example.org', 'member', 'a' FROM generate_series(1, 20) g")
    sql("ANALYZE lamplighter.queued_managed_account_creations")
    conn = psycopg2.connect(database_url)
    try:
        cur = conn.cursor()
        cur.execute("EXPLAIN " + queries("accounts")["account_request_claim_next"])
        plan = "\n".join(r[0] for r in cur.fetchall())
    finally:
        conn.rollback()
        conn.close()
    assert "queued_managed_account_creations_due_idx" in plan, plan


def test_cli_reads_the_password_from_stdin_and_never_shows_it(configured, sql):
    env = lamplighter_env(DATABASE_URL=configured.database_url, LAMPLIGHTER_ENCRYPTION_KEYS=configured.encryption_keys)
    create = ["accounts", "create", "--organization", "family-7", "--username", "fia", "--given-name", "Fia",
              "--family-name", "Berg", "--email", "fia@example.org", "--role", "member", "--created-by", "admin-3"]

    def cli(*args, stdin=""):
        return subprocess.run([sys.executable, "-m", "console", *args], input=stdin, env=env, capture_output=True,
                              text=True, timeout=60)

    made = cli(*create, stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert re.fullmatch(r"account request \d+ queued; .*\n", made.stdout)
    [(stored,)] = sql("SELECT encrypted_password FROM lamplighter.queued_managed_account_creations")
    assert encryption.keyring().decrypt(stored) == PASSWORD

    missing = cli(*create)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "use --no-password" in missing.stderr
    assert cli(*create[:5], "gus", *create[6:], "--no-password").returncode == 0

    listed = cli("accounts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["username"] for r in json.loads(listed.stdout)] == ["gus", "fia"]
    for output in (made, missing, listed):
        assert PASSWORD not in output.stdout + output.stderr and "enc:v1:" not in output.stdout + output.stderr


def test_the_admin_is_told_by_email_end_to_end(configured, zitadel, smtp_server, broker, run_worker,  # noqa: F811
                                               database_url):
    """A request that fails for good, through real workers: the sweep fails it and writes the
    admin's notification in the same transaction; notifications.deliver mails it to a real SMTP
    server; the old managed_account_notifications name shows it, read once delivered."""
    settings = use_database(
        database_url, LAMPLIGHTER_ENCRYPTION_KEYS=configured.encryption_keys, ZITADEL_URL=configured.zitadel_url,
        ZITADEL_PAT=PAT, ZITADEL_ORG_ID=ORG, ZITADEL_PROJECT_ID="proj-1", ZITADEL_TIMEOUT="0.5",
        ZITADEL_USER_ID_PREFIX="ll-test-", LAMPLIGHTER_ACCOUNT_PROCESSING_TIMEOUT="120",
        LAMPLIGHTER_SMTP_URL=smtp_server.url(), LAMPLIGHTER_SMTP_FROM="Lamplighter <lamplighter@example.org>")
    broker.settings = settings
    request_id = new_request(DatabaseClock(), username="not valid", email="nv@example.org",
                             created_by="admin@example.org")
    run_worker()
    actors.accounts.retry_managed_account_creations.send()
    [mail] = wait_for(lambda: smtp_server.mailbox.received, message="the admin's e-mail")
    assert mail.rcpt_tos == ["admin@example.org"]
    assert mail.message["Subject"] == "Managed account 'not valid' could not be created"
    text = mail.message.get_body(("plain",)).get_content()
    assert "Username is invalid (V2-bAqE2)" in text and "organization family-7" in text
    assert "Username is invalid" in mail.message.get_body(("html",)).get_content()
    assert account_rows.get(request_id).status == "failed"
    [notice] = wait_for(lambda: account_rows.notifications("admin@example.org", unread_only=False)[0].read_at
                        and account_rows.notifications("admin@example.org", unread_only=False), message="read_at")
    assert (notice.request_id, notice.kind) == (request_id, "creation_failed")
    assert account_rows.notifications("admin@example.org") == []  # delivered counts as read
