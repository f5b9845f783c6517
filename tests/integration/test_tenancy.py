"""Tenant boundaries: every table with a tenant_id column is a tenant's (NOT NULL, foreign key)
or says why not; every named query touching one filters by the tenant or is a cross-tenant
sweep with a reason; `lamplighter tenants ...`; a tenant-bound job's log line and history row."""
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from domain import tenants
from domain.errors import Conflict, InvalidInput, NotFound
from storage.queries import SQL_DIRECTORY, _without_comments, queries
from tests.cli_runs import run_cli
from tests.conftest import wait_for

# Tables whose tenant_id may be NULL, with a foreign key to lamplighter.tenants all the same.
TENANT_OPTIONAL = {
    "lamplighter.users": "platform users (operators of the whole deployment) belong to no tenant",
    "lamplighter.api_tokens": "platform tokens (the deployment's own services) belong to no tenant",
}
# Tables with a tenant_id that are no tenant's: no foreign key.
NOT_TENANT_OWNED = {
    "dramatiq.queue": "the queue is every tenant's: tenant_id is a label other services set when they enqueue "
                      "(text, often for a tenant this database has no row for); a job for an unknown tenant "
                      "still runs, and pruning must not wait for tenants",
    "lamplighter.job_history": "a job's attempts, with the job's tenant label copied in",
    "lamplighter.audit_log": "the record outlives tenants (deleting one must not delete what it did) and platform "
                             "actions have no tenant",
    "lamplighter.notifications": "a label, like a job's: notices about jobs of tenants this database may not have "
                                 "must still go out, what was said outlives the tenant, and alerts have none",
}

ENGINE = "the queue engine claims, starts, finishes, hands back and rescues every tenant's jobs"
ENQUEUE = "enqueueing writes the job's tenant label as its sender gave it"
OPERATOR_VIEW = ("an operator's view over every tenant (the CLI holds the database URL: a platform superadmin); "
                 "the HTTP API (issue 17) adds tenant-scoped reads")
PAGE_FOLLOW_UP = ("the jobs page's error search checks the jobs a tenant-filtered page (job_page) just returned, "
                  "by their ids, and nothing else")
MAINTENANCE = "maintenance over every tenant's rows, in bounded batches"
AUTHENTICATION = "authentication finds a credential or a user before any tenant is known"
SCHEDULER = "the scheduler looks at the jobs its schedules enqueued (overlap, last run), which belong to no tenant"
ADMIN = ("the admin jobs read every tenant's rows on purpose: rollups and reports count the whole platform "
         "(per tenant), security alerts and expiry notices are the platform's, failed-job alerts read all history")
FAN_OUT = ("a per-tenant actor's periodic tick names the tenants that have work (their ids, nothing else) and queues "
           "one job per tenant, which then runs on that tenant's rows alone")
OUTBOX = ("the outbox writes and delivers every tenant's notifications by row id or dedupe key, and resolves "
          "the recipients a row names (a role within the row's tenant)")
INTEGRATION_JOBS = ("integration jobs act on one integration by the id in their arguments (taken from a row of its "
                    "tenant), and the sweeps walk every tenant's active integrations")

MONITORING = "the performance monitor's figures are per actor across every tenant's jobs"
METRICS = "/metrics reports queue depths across every tenant (superadmin figures, README \"/metrics\")"
LICENSES = "the daily license check expires and counts every tenant's licenses (seats: each tenant's own users)"

CROSS_TENANT = {
    ENGINE: ["job_claim_batch", "job_claim_woken", "job_mark_started", "job_finish_many", "job_reject_undecodable",
             "job_defer_unknown_actor", "job_release_unstarted", "job_release_lost_claim", "job_hand_back_started",
             "slot_free_stray", "job_cancel_requested", "worker_rescue_lost", "worker_reconcile"],
    ENQUEUE: ["job_insert_one", "job_insert_many", "job_copy_in", "job_insert_unique_set"],
    PAGE_FOLLOW_UP: ["job_ids_with_error"],
    OPERATOR_VIEW: ["job_get", "job_events_for_job", "history_for_job", "queue_stats", "queue_count_estimate", "job_requeue", "job_requeue_matching",
                    "job_cancel_waiting", "job_cancel_running", "job_discard", "stats_by_actor", "history_count_estimate", "worker_list",
                    "audit_partitions",
                    "notification_list", "notification_retry"],
    MAINTENANCE: ["job_prune_finished", "token_prune_ended"],
    AUTHENTICATION: ["user_find_for_login", "user_record_login", "token_authenticate", "session_resolve"],
    SCHEDULER: ["schedule_list", "schedule_run_active"],
    ADMIN: ["analytics_rollup_hour", "report_compliance_events", "report_compliance_days", "security_events_after",
            "security_failed_logins_for_account", "security_failed_logins_from_address",
            "security_address_seen_before", "security_user_role", "security_recent_failed_login",
            "credentials_expiring", "job_alerts_history_after", "job_alerts_failures_in_window",
            "job_alerts_start_position", "security_start_position"],
    FAN_OUT: ["document_fan_out"],
    OUTBOX: ["notification_insert", "notification_set_job", "notification_get", "notification_get_by_dedupe_key",
             "notification_begin_attempt", "notification_record_delivered", "notification_record_failure",
             "notification_requeue_pending", "notification_recipient_user", "notification_recipient_role",
             "notification_recipient_tenant_owner"],
    MONITORING: ["perf_take_sample"],
    METRICS: ["metrics_queue_depths"],
    LICENSES: ["license_expire_due", "license_count_seats"],
    INTEGRATION_JOBS: ["integration_get", "integration_store_refreshed", "integration_record_refresh_failure",
                       "integration_give_up", "integration_record_health", "integration_active_ids",
                       "integration_index_advance", "integration_index_finish"],
}
SWEEPS = {name: reason for reason, names in CROSS_TENANT.items() for name in names}
TENANT_FILTER = re.compile(r"%\(every_tenant\)s\s+OR\s+(?:\w+\.)?tenant_id\s*=\s*%\(tenant_id\)s")
TABLE = re.compile(r"\b(lamplighter|dramatiq)\.(\w+)\b")


def _tenant_tables(sql) -> set[str]:
    return {name for (name,) in sql(
        "SELECT n.nspname || '.' || c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.attname = 'tenant_id' AND NOT a.attisdropped "
        "AND n.nspname IN ('lamplighter', 'dramatiq') AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition")}


def test_every_table_with_a_tenant_id_is_a_tenants_or_says_why_not(database_url, sql):
    found = {}
    for (table, not_null, references) in sql(
            "SELECT n.nspname || '.' || c.relname, a.attnotnull, "
            "       (SELECT string_agg(co.confrelid::regclass::text, ',') FROM pg_constraint co "
            "        WHERE co.conrelid = c.oid AND co.contype = 'f' AND a.attnum = ANY(co.conkey)) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE a.attname = 'tenant_id' AND NOT a.attisdropped AND n.nspname IN ('lamplighter', 'dramatiq') "
            "AND c.relkind IN ('r', 'p') AND NOT c.relispartition"):
        found[table] = (not_null, references)
    assert set(TENANT_OPTIONAL) | set(NOT_TENANT_OWNED) <= set(found)
    for table, (not_null, references) in found.items():
        if table in NOT_TENANT_OWNED:
            assert references is None, f"{table}: listed as no tenant's, but has a foreign key to {references}"
        elif table in TENANT_OPTIONAL:
            assert references == "lamplighter.tenants", f"{table}: tenant_id needs a foreign key to the tenants"
        else:
            # Besides the tenants, tenant_id may sit in composite keys to other rows of the same
            # tenant (a webhook delivery's event and endpoint): those hold the tenant equal.
            assert not_null and "lamplighter.tenants" in (references or "").split(","), (
                f"{table}.tenant_id must be NOT NULL with a foreign key to lamplighter.tenants, or be listed "
                "in TENANT_OPTIONAL / NOT_TENANT_OWNED with a reason")


def test_every_named_query_on_a_tenants_rows_filters_by_tenant_or_is_a_listed_sweep(database_url, sql):
    tenant_tables = _tenant_tables(sql)
    assert {"lamplighter.users", "lamplighter.api_tokens", "lamplighter.audit_log", "dramatiq.queue",
            "lamplighter.credentials"} <= tenant_tables
    unfiltered, seen = [], set()
    for path in sorted(SQL_DIRECTORY.glob("*.sql")):
        for name, text in queries(path.stem).items():
            body = _without_comments(text)
            touched = {f"{schema}.{table}" for schema, table in TABLE.findall(body)} & tenant_tables
            if not touched:
                continue
            seen.add(name)
            inserts_its_tenant = body.lstrip().upper().startswith("INSERT") and "%(tenant_id)s" in body
            if TENANT_FILTER.search(body) or inserts_its_tenant or name in SWEEPS:
                continue
            unfiltered.append(f"storage/sql/{path.name}: {name} ({', '.join(sorted(touched))})")
    assert unfiltered == [], ("these queries touch a table with tenant_id without filtering by the tenant "
                              "(AND (%(every_tenant)s OR tenant_id = %(tenant_id)s), see storage/tenants.py); "
                              "filter them, or list them in CROSS_TENANT with a reason:\n" + "\n".join(unfiltered))
    assert set(SWEEPS) - seen == set(), "listed sweeps that no longer touch a tenant's table (or are gone)"


def test_a_tenant_scope_needs_a_scope(database_url):
    from storage import users as user_rows

    with pytest.raises(TypeError):
        user_rows.list_users()  # no default: whose rows is a decision
    with pytest.raises(TypeError):
        user_rows.list_users(scope="acme")
    from storage.tenants import TenantScope

    assert TenantScope(tenant_id=None).allows("acme") is False  # bound to nothing: sees nothing
    with pytest.raises(ValueError):
        TenantScope.of("")


def test_tenants_are_created_and_change_status_with_an_audit_row(database_url, sql):
    tenant = tenants.create_tenant("acme", "Acme Corp", by="cli:ops@host")
    assert (tenant.id, tenant.billing_status, tenant.grace_period_ends_at) == ("acme", "active", None)
    with pytest.raises(Conflict):
        tenants.create_tenant("acme", "Again", by="t")
    with pytest.raises(InvalidInput):
        tenants.create_tenant("Not Valid", "X", by="t")
    end = datetime.now(timezone.utc) + timedelta(days=14)
    assert tenants.set_status("acme", "grace", grace_period_ends_at=end, by="system:billing").billing_status == "grace"
    with pytest.raises(InvalidInput):
        tenants.set_status("acme", "grace", by="t")  # a grace period needs its end
    with pytest.raises(InvalidInput):
        tenants.set_status("acme", "overdue", by="t")
    with pytest.raises(NotFound):
        tenants.set_status("ghost", "suspended", by="t")
    tenants.set_status("acme", "suspended", by="system:billing")
    assert sql("SELECT actor, action, tenant_id, details FROM lamplighter.audit_log ORDER BY id") == [
        ("cli:ops@host", "tenant.created", "acme", {"name": "Acme Corp"}),
        ("system:billing", "tenant.status_changed", "acme",
         {"from": "active", "to": "grace", "grace_period_ends_at": end.isoformat()}),
        ("system:billing", "tenant.status_changed", "acme", {"from": "grace", "to": "suspended"})]


def test_tenants_verbs(database_url, sql, monkeypatch, capsys):
    assert run_cli(monkeypatch, capsys, "tenants", "create", "acme", "--name", "Acme Corp")[0] == 0
    assert run_cli(monkeypatch, capsys, "tenants", "set-status", "acme", "grace", "--grace", "7d")[0] == 0
    code, out, _ = run_cli(monkeypatch, capsys, "tenants", "list", "--json")
    [listed] = json.loads(out)
    assert (listed["id"], listed["status"], listed["effective"], listed["may"]) == ("acme", "grace", "grace",
                                                                                    "read,write")
    refusals = [run_cli(monkeypatch, capsys, *argv) for argv in (
        ["tenants", "set-status", "acme", "read_only", "--grace", "7d"], ["tenants", "set-status", "ghost", "suspended"],
        ["tenants", "create", "acme", "--name", "Again"])]
    assert [(code, err) for code, _, err in refusals] == [
        (2, "lamplighter tenants: error: --grace goes with the grace status\n"),
        (1, "lamplighter tenants: no tenant 'ghost'\n"), (1, "lamplighter tenants: tenant 'acme' already exists\n")]
    code, out, _ = run_cli(monkeypatch, capsys, "tenants", "list")
    assert out.splitlines()[1].split()[:5] == ["acme", "Acme", "Corp", "grace", "grace"]


def test_a_tenant_bound_jobs_log_line_and_history_row_show_its_tenant(broker, run_worker, sql):
    import actors
    from storage import jobs, logs

    stream = io.StringIO()
    logs.configure(log_format="json", level="INFO", stream=stream)
    try:
        message = actors.maintenance.ping.send_with_options(kwargs={"note": "x"}, tenant_id="acme")
        run_worker(threads=1)
        [line] = wait_for(lambda: [json.loads(x) for x in stream.getvalue().splitlines()
                                   if message.message_id in x and '"job_completed"' in x],
                          message="the job_completed line")
    finally:
        logs.configure(log_format="json", level="INFO")
    assert line["tenant_id"] == "acme"
    # The line is written as the finish is handed to the finisher; its commit follows.
    [attempt] = wait_for(lambda: jobs.get(message.message_id).attempts, message="the attempt's history row")
    assert (attempt.outcome, attempt.tenant_id) == ("completed", "acme")
    assert sql("SELECT tenant_id FROM lamplighter.job_history WHERE job_id = %s", (message.message_id,)) == [("acme",)]
