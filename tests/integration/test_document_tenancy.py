"""Every document job is tenant-isolated: with two tenants' rows in every table and state, each of
acme's jobs changes acme's rows only (globex's rows and files stay byte for byte). And 1,000
documents classified by two worker processes at once are each classified exactly once."""
import hashlib
from datetime import timedelta

import actors
from domain import webhooks
from storage import files
from storage import settings as settings_module
from tests.conftest import wait_for
from tests.documents_setup import documents_env, upload  # noqa: F401 (fixture)

TABLES = {  # table: its order
    "lamplighter.documents": "id", "lamplighter.tenant_quotas": "tenant_id",
    "lamplighter.billing_usage_reports": "period", "lamplighter.webhook_endpoints": "id",
    "lamplighter.webhook_events": "id", "lamplighter.webhook_deliveries": "id",
}


def rows_of(sql, tenant: str) -> dict[str, list]:
    return {table: sql(f"SELECT * FROM {table} WHERE tenant_id = %s ORDER BY {order}", (tenant,))
            for table, order in TABLES.items()}


def files_of(directory, tenant: str) -> dict[str, bytes]:
    root = directory / "documents" / tenant
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def seed(tenant: str, httpserver) -> int:
    """Documents in every state the jobs act on, a quota, a webhook endpoint with a delivery."""
    upload(tenant, "invoice.txt", b"Invoice")  # pending
    upload(tenant, "empty.txt", b"")  # fails when classified
    actors.documents.classify.fn(tenant)
    upload(tenant, "contract.txt", b"agreement")  # pending, its retention ends
    upload(tenant, "empty-again.txt", b"")
    webhooks.add_endpoint(tenant, httpserver.url_for(f"/{tenant}"), by="tests")
    [delivery] = webhooks.publish(tenant, "document.classified", {"n": 1}, send=actors.webhooks.queue_deliveries)
    return delivery


def test_each_job_of_one_tenant_changes_only_that_tenants_rows_and_files(documents_env, sql, httpserver, db_clock):
    httpserver.expect_request("/acme").respond_with_data("ok")
    acme_delivery = seed("acme", httpserver)
    globex_delivery = seed("globex", httpserver)
    sql("UPDATE lamplighter.documents SET retention_until = lamplighter.now() - interval '1 minute' "
        "WHERE name = 'contract.txt'")
    documents_env.configure(LAMPLIGHTER_BILLING_URL=httpserver.url_for("/billing"))
    httpserver.expect_request("/billing").respond_with_data("", status=202)
    globex_rows, globex_files = rows_of(sql, "globex"), files_of(documents_env.files_dir, "globex")
    acme_before = rows_of(sql, "acme")
    period = (db_clock.now() - timedelta(days=1)).date().isoformat()

    results = {
        "documents.retry_failed": actors.documents.retry_failed.fn("acme"),
        "documents.classify": actors.documents.classify.fn("acme"),
        "documents.cleanup_expired": actors.documents.cleanup_expired.fn("acme"),
        "quotas.check": actors.quotas.check.fn("acme"),
        "billing.report_usage": actors.billing.report_usage.fn("acme", period),
        "webhooks.deliver (its own)": actors.webhooks.deliver.fn("acme", acme_delivery),
        "webhooks.deliver (globex's id)": actors.webhooks.deliver.fn("acme", globex_delivery),
    }
    assert results == {
        "documents.retry_failed": {"retried": 1, "dead_lettered": 0},
        "documents.classify": {"classified": 1, "failed": 2},  # invoice.txt; both empty ones fail
        "documents.cleanup_expired": {"expired": 1, "files_missing": 0},
        "quotas.check": {"documents": 3, "bytes": 7, "blocked": 0, "changed": 0},
        "billing.report_usage": {"posted": 1},
        "webhooks.deliver (its own)": {"delivered": 1},
        "webhooks.deliver (globex's id)": {"delivered": 0, "skipped": 1},
    }
    acme_after = rows_of(sql, "acme")
    assert all(acme_after[t] != acme_before[t] for t in TABLES if t not in ("lamplighter.webhook_endpoints",
                                                                           "lamplighter.webhook_events"))
    assert rows_of(sql, "globex") == globex_rows
    assert files_of(documents_env.files_dir, "globex") == globex_files
    assert sorted(r.path for r, _ in httpserver.log) == ["/acme", "/billing"]


def test_a_thousand_documents_on_two_worker_processes_are_each_classified_once(documents_env, broker, sql,
                                                                               worker_processes):
    # The files as the directory store keeps them (README "Files": each beside its SHA-256 in
    # sha256sum format), written without the store's fsyncs, which would cost seconds here.
    directory = documents_env.files_dir / "documents" / "acme"
    directory.mkdir(parents=True)
    for n in range(1000):
        content = b"invoice %d" % n if n % 2 else b"meeting notes %d" % n
        (directory / f"d{n}").write_bytes(content)
        (directory / f".d{n}.sha256").write_text(f"{hashlib.sha256(content).hexdigest()}  d{n}\n")
    assert files.open_store(settings_module.get()).get("documents/acme/d1") == b"invoice 1"
    sql("INSERT INTO lamplighter.tenant_quotas (tenant_id, max_documents, max_bytes) VALUES ('acme', 5000, 10000000)")
    sql("INSERT INTO lamplighter.documents (tenant_id, name, size_bytes, file_key, sha256, retention_until, "
        "uploaded_by) SELECT 'acme', 'doc-' || g, 10, 'documents/acme/d' || g, '', lamplighter.now() + "
        "interval '1 year', 'tests' FROM generate_series(0, 999) g")
    for name in ("one", "two"):
        worker_processes.start(name, documents_env.database_url, sql, threads=4, queues=("documents",),
                               **documents_env.env)
    # Both processes listening on the queue before the jobs go in: otherwise the first one up can
    # claim all twenty before the second's consumer starts (seen under load).
    wait_for(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND application_name = 'lamplighter-worker/listen'") == [(2,)],  # each consumes documents only
             timeout=30, message=f"both processes listening\n{worker_processes.logs()}")
    # Twenty jobs at once for the tenant (no unique key), on eight threads in two processes.
    broker.enqueue_many([actors.documents.classify.message_with_options(kwargs={"tenant_id": "acme"})
                         for _ in range(20)])
    wait_for(lambda: sql("SELECT count(*) FROM dramatiq.queue WHERE actor_name = 'documents.classify' "
                         "AND state = 'completed'") == [(20,)], timeout=60,
             message=f"20 classify jobs completed\n{worker_processes.logs()}")
    assert sql("SELECT status, classification, count(*) FROM lamplighter.documents GROUP BY 1, 2 ORDER BY 2") == [
        ("classified", "invoice", 500), ("classified", "other", 500)]
    [(classified, workers)] = sql(
        "SELECT sum((result_summary->>'classified')::int), count(DISTINCT worker_id) FROM lamplighter.job_history "
        "WHERE actor_name = 'documents.classify' AND outcome = 'completed'")
    assert classified == 1000  # a document classified twice would count twice
    assert workers == 2
