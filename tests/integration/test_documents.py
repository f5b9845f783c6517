"""Documents: upload (domain and CLI) refused by the tenant's status or quota; documents.classify,
retry_failed (dead letter, CLI redrive) and cleanup_expired, each against two tenants' rows:
only the job's tenant changes."""
import json
from datetime import timedelta

import pytest

import actors
from domain import documents, tenants
from domain.errors import Forbidden, InvalidInput
from domain.outcomes import RetryLater
from tests.cli_runs import run_cli
from tests.documents_setup import documents_env, upload  # noqa: F401 (fixture)

classify = actors.documents.classify.fn
retry_failed = actors.documents.retry_failed.fn
cleanup_expired = actors.documents.cleanup_expired.fn


def statuses(sql, tenant=None) -> dict[str, str]:
    return {name: status for name, status in sql(
        "SELECT name, status FROM lamplighter.documents WHERE %s::text IS NULL OR tenant_id = %s ORDER BY id",
        (tenant, tenant))}


def cli(monkeypatch, capsys, *argv) -> tuple[int, str]:
    """(exit code, the last line on stderr: the error, after any log lines)."""
    try:
        code, _, err = run_cli(monkeypatch, capsys, *argv)
    except SystemExit as exc:  # argparse's refusal
        code, err = exc.code, capsys.readouterr().err
    return code, (err.splitlines() or [""])[-1]


def jobs_of(sql, actor):
    return sql("SELECT tenant_id, message->'kwargs' FROM dramatiq.queue WHERE actor_name = %s AND state = 'queued' "
               "ORDER BY tenant_id", (actor,))


def test_upload_stores_the_file_and_queues_classification_and_a_quota_check(documents_env, sql):
    document = upload("acme", "invoice-42.txt", b"Invoice 42, amount due: 10 EUR")
    assert (document.tenant_id, document.status, document.size_bytes) == ("acme", "pending", 30)
    assert documents_env.store.get(document.file_key) == b"Invoice 42, amount due: 10 EUR"
    assert jobs_of(sql, "documents.classify") == [("acme", {"tenant_id": "acme"})]
    assert jobs_of(sql, "quotas.check") == [("acme", {"tenant_id": "acme"})]
    upload("acme", "second.txt")  # one job per tenant waits, not one per upload
    assert len(jobs_of(sql, "documents.classify")) == 1
    assert sql("SELECT documents_used, bytes_used FROM lamplighter.tenant_quotas WHERE tenant_id = 'acme'") == [(2, 35)]
    assert sql("SELECT action, target_id FROM lamplighter.audit_log WHERE action = 'document.uploaded' ORDER BY id") == [
        ("document.uploaded", str(document.id)), ("document.uploaded", str(document.id + 1))]


def test_upload_is_refused_while_the_tenant_may_not_upload_or_is_over_quota(documents_env, sql):
    tenants.set_status("acme", "read_only", by="tests")
    with pytest.raises(Forbidden, match="may not upload now .billing status read_only"):
        upload("acme", "a.txt")
    tenants.set_status("acme", "active", by="tests")
    sql("INSERT INTO lamplighter.tenant_quotas (tenant_id, max_documents, max_bytes) VALUES ('acme', 2, 100)")
    upload("acme", "a.txt", b"x" * 60)
    with pytest.raises(Forbidden, match="does not fit the quota"):
        upload("acme", "b.txt", b"x" * 60)  # 120 bytes > 100
    sql("UPDATE lamplighter.tenant_quotas SET uploads_blocked = true WHERE tenant_id = 'acme'")
    with pytest.raises(Forbidden, match="uploads are blocked"):
        upload("acme", "c.txt", b"x")
    with pytest.raises(InvalidInput):
        upload("globex", "../etc/passwd")
    # Nothing refused was kept: one document, one file.
    assert statuses(sql) == {"a.txt": "pending"}
    assert len([p for p in documents_env.files_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]) == 1


def test_documents_upload_verb(documents_env, sql, monkeypatch, capsys, tmp_path):
    path = tmp_path / "contract.txt"
    path.write_bytes(b"This agreement ...")
    code, out, err = run_cli(monkeypatch, capsys, "documents", "upload", "acme", str(path))
    assert code == 0, err
    assert out.startswith("document 1 (contract.txt, 18 bytes) uploaded for acme")
    refusals = [cli(monkeypatch, capsys, *argv) for argv in (
        ["documents", "upload", "acme", str(tmp_path / "missing.txt")],
        ["documents", "upload", "Not A Tenant", str(path)], ["documents", "upload", "ghost", str(path)])]
    assert refusals[0] == (2, f"lamplighter documents: error: {tmp_path / 'missing.txt'}: no such file")
    assert refusals[1][0] == 2 and "is not a tenant id" in refusals[1][1]
    assert refusals[2] == (1, "lamplighter documents: no tenant 'ghost'")
    tenants.set_status("acme", "suspended", by="tests")
    assert cli(monkeypatch, capsys, "documents", "upload", "acme", str(path)) == (
        1, "lamplighter documents: tenant 'acme' may not upload now (billing status suspended)")
    code, out, _ = run_cli(monkeypatch, capsys, "documents", "list", "--json")
    assert [(d["tenant"], d["name"], d["status"]) for d in json.loads(out)] == [("acme", "contract.txt", "pending")]


def test_classify_changes_only_its_tenants_documents_and_routes_them(documents_env, sql):
    for tenant in ("acme", "globex"):
        upload(tenant, "invoice-1.txt", b"Invoice")
        upload(tenant, "notes.txt", b"meeting notes")
        upload(tenant, "empty.txt", b"")
    assert classify("acme") == {"classified": 2, "failed": 1}
    assert sql("SELECT name, status, classification, routing_destination, last_error FROM lamplighter.documents "
               "WHERE tenant_id = 'acme' ORDER BY id") == [
        ("invoice-1.txt", "classified", "invoice", "finance", None),
        ("notes.txt", "classified", "other", "general-inbox", None),
        ("empty.txt", "failed", None, None, "unclassifiable: empty document")]
    assert set(statuses(sql, "globex").values()) == {"pending"}
    assert classify("acme") == {"classified": 0, "failed": 0}
    # The periodic tick (no tenant) queues one job per tenant with pending documents.
    sql("DELETE FROM dramatiq.queue")
    assert classify() == {"tenants": 1}
    assert jobs_of(sql, "documents.classify") == [("globex", {"tenant_id": "globex"})]


def test_a_missing_file_fails_the_document_and_an_unreachable_store_leaves_it_pending(documents_env, sql):
    doc = upload("acme", "report.txt", b"Quarterly report")
    documents_env.store.delete(doc.file_key)
    assert classify("acme") == {"classified": 0, "failed": 1}
    assert sql("SELECT status, last_error FROM lamplighter.documents") == [("failed", "the stored file is missing")]

    class Unreachable:
        def get(self, key):
            raise RetryLater("file store unreachable")

    upload("acme", "other.txt")
    with pytest.raises(RetryLater):
        documents.classify_pending("acme", files=Unreachable())
    assert statuses(sql)["other.txt"] == "pending"


def test_failed_documents_retry_three_times_then_dead_letter_and_are_redriven(documents_env, sql, monkeypatch,
                                                                               capsys):
    for tenant in ("acme", "globex"):
        upload(tenant, "empty.txt", b"")
    classify("globex")
    for round_ in range(3):
        assert classify("acme") == {"classified": 0, "failed": 1}
        assert retry_failed("acme") == {"retried": 1, "dead_lettered": 0}
        assert sql("SELECT status, retry_count FROM lamplighter.documents WHERE tenant_id = 'acme'") == [
            ("pending", round_ + 1)]
    classify("acme")
    assert retry_failed("acme") == {"retried": 0, "dead_lettered": 1}
    assert sql("SELECT tenant_id, status, retry_count FROM lamplighter.documents ORDER BY tenant_id") == [
        ("acme", "dead_lettered", 3), ("globex", "failed", 0)]  # globex's untouched
    code, out, _ = run_cli(monkeypatch, capsys, "documents", "list", "--status", "dead_lettered", "--json")
    [listed] = json.loads(out)
    assert (listed["tenant"], listed["retries"], listed["last_error"]) == ("acme", 3, "unclassifiable: empty document")
    assert cli(monkeypatch, capsys, "documents", "redrive", "acme")[0] == 2  # ids or --all
    assert cli(monkeypatch, capsys, "documents", "redrive", "globex", str(listed["id"])) == (
        1, f"lamplighter documents: tenant 'globex' has no dead-lettered document {listed['id']}")
    code, out, _ = run_cli(monkeypatch, capsys, "documents", "redrive", "acme", "--all")
    assert (code, out) == (0, f"1 document(s) of acme back to classification: {listed['id']}\n")
    assert sql("SELECT status, retry_count FROM lamplighter.documents WHERE tenant_id = 'acme'") == [("pending", 0)]
    assert sql("SELECT count(*) FROM lamplighter.audit_log WHERE action = 'document.redriven'") == [(1,)]


def test_retry_failed_works_in_batches_of_50(documents_env, sql):
    upload("acme", "seed.txt")
    sql("INSERT INTO lamplighter.documents (tenant_id, name, size_bytes, file_key, sha256, status, retention_until, "
        "uploaded_by, failed_at) SELECT 'acme', 'f' || g, 1, 'k' || g, '', 'failed', lamplighter.now() + "
        "interval '1 day', 'tests', lamplighter.now() FROM generate_series(1, 120) g")
    batches = []
    real = documents.document_rows.retry_failed_batch

    def counted(**kwargs):
        batches.append(len(result := real(**kwargs)))
        return result

    documents.document_rows.retry_failed_batch = counted
    try:
        assert retry_failed("acme") == {"retried": 120, "dead_lettered": 0}
    finally:
        documents.document_rows.retry_failed_batch = real
    assert batches == [50, 50, 20, 0]


def test_cleanup_expires_past_retention_deletes_files_and_survives_a_crash_between(documents_env, sql, db_clock):
    kept = {t: upload(t, "old.txt", b"old") for t in ("acme", "globex")}
    fresh = upload("acme", "fresh.txt", b"new")
    sql("UPDATE lamplighter.documents SET retention_until = lamplighter.now() - interval '1 hour' "
        "WHERE name = 'old.txt'")
    # A crash after the file delete, before the status change: the transaction is rolled back and
    # the document is still there, unexpired, its file gone.
    store = documents_env.store

    class CrashAfterDelete:
        def stat(self, key):
            return store.stat(key)

        def delete(self, key):
            store.delete(key)
            raise SystemExit("worker killed")

    with pytest.raises(SystemExit):
        documents.cleanup_expired("acme", files=CrashAfterDelete())
    assert statuses(sql, "acme") == {"old.txt": "pending", "fresh.txt": "pending"}
    assert cleanup_expired("acme") == {"expired": 1, "files_missing": 1}  # the next run finishes the job
    assert sql("SELECT tenant_id, name, status FROM lamplighter.documents WHERE status = 'expired'") == [
        ("acme", "old.txt", "expired")]
    assert store.get(kept["globex"].file_key) == b"old" and store.get(fresh.file_key) == b"new"
    assert sql("SELECT tenant_id, target_id FROM lamplighter.audit_log WHERE action = 'document.expired'") == [
        ("acme", str(kept["acme"].id))]
    sql("DELETE FROM dramatiq.queue")
    assert cleanup_expired() == {"tenants": 1}  # globex's is due
    assert jobs_of(sql, "documents.cleanup_expired") == [("globex", {"tenant_id": "globex"})]
    assert cleanup_expired("globex") == {"expired": 1, "files_missing": 0}
    with pytest.raises(Exception, match="no file"):
        store.get(kept["globex"].file_key)
    db_clock.advance(timedelta(days=400).total_seconds())
    assert cleanup_expired("acme") == {"expired": 1, "files_missing": 0}  # fresh.txt's retention ended too
