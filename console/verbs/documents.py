"""`lamplighter documents upload|list|redrive|quota`: a tenant's documents (domain/documents.py)
and quota (domain/quotas.py). Dead-lettered documents are listed with `--status dead_lettered`
and sent back to classification with `redrive`."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from console import cli

COLUMNS = ["id", "tenant", "name", "size", "status", "classification", "destination", "retries", "last_error",
           "retention_until"]
QUOTA_COLUMNS = ["tenant", "documents", "max_documents", "bytes", "max_bytes", "uploads_blocked", "checked_at"]


def register(verbs) -> None:
    from storage.documents import STATUSES

    d = verbs.add_parser("documents", help="documents: upload, list, redrive dead-lettered ones, quotas")
    actions = d.add_subparsers(dest="documents_action", metavar="ACTION", parser_class=cli.Parser)
    actions.required = True
    u = actions.add_parser("upload", help="store a file as a tenant's document, queued for classification")
    u.add_argument("tenant_id", metavar="TENANT", type=cli.tenant_id)
    u.add_argument("file", metavar="FILE", type=Path)
    u.add_argument("--name", default=None, help="the document's name (default: the file's)")
    u.set_defaults(run=cmd_upload)
    ls = actions.add_parser("list", help="documents, newest first")
    ls.add_argument("--tenant", type=cli.tenant_id, default=None)
    ls.add_argument("--status", choices=STATUSES, default=None, help=" | ".join(STATUSES))
    ls.add_argument("--limit", type=cli.positive_int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_list)
    r = actions.add_parser("redrive", help="dead-lettered documents back to classification")
    r.add_argument("tenant_id", metavar="TENANT", type=cli.tenant_id)
    r.add_argument("ids", metavar="ID", type=cli.positive_int, nargs="*")
    r.add_argument("--all", action="store_true", help="every dead-lettered document of the tenant")
    r.set_defaults(run=cmd_redrive)
    q = actions.add_parser("quota", help="show a tenant's quota, or set its limits")
    q.add_argument("tenant_id", metavar="TENANT", type=cli.tenant_id)
    q.add_argument("--max-documents", type=cli.positive_int, default=None)
    q.add_argument("--max-bytes", type=cli.positive_int, default=None)
    q.add_argument("--json", action="store_true")
    q.set_defaults(run=cmd_quota)


@dataclass(frozen=True)
class DocumentRow:
    id: int
    tenant: str
    name: str
    size: int
    status: str
    classification: str | None
    destination: str | None
    retries: int
    last_error: str | None
    retention_until: datetime


@dataclass(frozen=True)
class QuotaRow:
    tenant: str
    documents: int
    max_documents: int
    bytes: int
    max_bytes: int
    uploads_blocked: bool
    checked_at: datetime | None


def document_rows(tenant_id: str | None, *, status: str | None = None, limit: int = 50) -> list[DocumentRow]:
    from domain import documents

    return [DocumentRow(id=d.id, tenant=d.tenant_id, name=d.name, size=d.size_bytes, status=d.status,
                        classification=d.classification, destination=d.routing_destination, retries=d.retry_count,
                        last_error=d.last_error, retention_until=d.retention_until)
            for d in documents.list_documents(tenant_id, status=status, limit=limit)]


def quota_row(quota) -> QuotaRow:
    return QuotaRow(tenant=quota.tenant_id, documents=quota.documents_used, max_documents=quota.max_documents,
                    bytes=quota.bytes_used, max_bytes=quota.max_bytes, uploads_blocked=quota.uploads_blocked,
                    checked_at=quota.checked_at)


def cmd_upload(args, settings) -> int:
    from domain import documents
    from storage import files

    if not args.file.is_file():
        raise cli.UsageError(f"{args.file}: no such file")
    try:
        store = files.open_store(settings)
        document = documents.upload(args.tenant_id, args.name or args.file.name, args.file.read_bytes(), files=store,
                                    by=cli.operator())
    except files.FileStoreError as exc:
        print(f"lamplighter documents: {exc}", file=sys.stderr)
        return cli.EXIT_FAILURE
    print(f"document {document.id} ({document.name}, {document.size_bytes} bytes) uploaded for {document.tenant_id}, "
          "queued for classification")
    return 0


def cmd_list(args, settings) -> int:
    cli.print_rows(document_rows(args.tenant, status=args.status, limit=args.limit), COLUMNS, as_json=args.json)
    return 0


def cmd_redrive(args, settings) -> int:
    from domain import documents

    if bool(args.ids) == args.all:
        raise cli.UsageError("name the documents (ID ...) or pass --all, not both")
    redriven = documents.redrive(args.tenant_id, args.ids or None, by=cli.operator())
    print(f"{len(redriven)} document(s) of {args.tenant_id} back to classification"
          + (f": {', '.join(map(str, redriven))}" if redriven else ""))
    return 0


def cmd_quota(args, settings) -> int:
    from domain import quotas, tenants

    if args.max_documents is None and args.max_bytes is None:
        tenants.get_tenant(args.tenant_id)
        quota = quotas.ensure(args.tenant_id)
    else:
        quota = quotas.set_limits(args.tenant_id, max_documents=args.max_documents, max_bytes=args.max_bytes,
                                  by=cli.operator())
    cli.print_rows([quota_row(quota)], QUOTA_COLUMNS, as_json=args.json)
    return 0
