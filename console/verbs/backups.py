"""`lamplighter backups list | verify ID | restore ID --into URL [--force]`: the backups
(domain/backups.py). Verify checks the stored file's SHA-256 and restores it into the scratch
database; restore refuses a target that holds anything unless --force."""
from __future__ import annotations

import argparse
import sys

from console import cli

TABLE_COLUMNS = ["id", "status", "started_at", "size_bytes", "pg_dump_version", "rows", "file_key", "error"]


def database_url(text: str) -> str:
    from storage.settings import SettingsError, normalize_database_url

    try:
        url = normalize_database_url(text)
    except SettingsError:
        raise argparse.ArgumentTypeError("expected a postgresql:// URL") from None
    if not url:
        raise argparse.ArgumentTypeError("expected a postgresql:// URL")
    return url


def register(verbs) -> None:
    b = verbs.add_parser("backups", help="database backups: list, verify one, restore one into a database")
    actions = b.add_subparsers(dest="backups_action", metavar="ACTION", parser_class=cli.Parser)
    actions.required = True
    ls = actions.add_parser("list", help="backups, newest first")
    ls.add_argument("--all", action="store_true", help="also those retention deleted")
    ls.add_argument("--limit", type=cli.positive_int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_list)
    v = actions.add_parser("verify", help="check the file's checksum and restore it into the scratch database")
    v.add_argument("id", metavar="ID", type=cli.positive_int)
    v.set_defaults(run=cmd_verify)
    r = actions.add_parser("restore", help="restore a backup into the database at URL")
    r.add_argument("id", metavar="ID", type=cli.positive_int)
    r.add_argument("--into", metavar="URL", type=database_url, required=True)
    r.add_argument("--force", action="store_true", help="restore into a database that is not empty")
    r.set_defaults(run=cmd_restore)


def backups_view(*, limit: int, include_deleted: bool):
    from storage import backups as backup_rows

    return backup_rows.list_backups(limit=limit, include_deleted=include_deleted)


def table_rows(view) -> list[dict]:
    return [{"id": b.id, "status": b.status, "started_at": b.started_at, "size_bytes": b.size_bytes,
             "pg_dump_version": b.pg_dump_version, "rows": sum((b.row_counts or {}).values()) if b.row_counts else None,
             "file_key": b.file_key, "error": (b.error or "")[:80] or None} for b in view]


def _context(settings):
    from domain import backups
    from storage import connection
    from storage import files

    return files.open_store(settings), backups.config(settings, connection.database_url())


def cmd_list(args, settings) -> int:
    view = backups_view(limit=args.limit, include_deleted=args.all)
    if args.json:
        cli.print_json(view)
    else:
        print(cli.table(table_rows(view), TABLE_COLUMNS))
    return 0


def _file_store_errors(command):
    def run(args, settings) -> int:
        from storage import files

        try:
            return command(args, settings)
        except files.FileStoreError as exc:
            print(f"lamplighter backups: {exc}", file=sys.stderr)
            return cli.EXIT_FAILURE
    return run


@_file_store_errors
def cmd_verify(args, settings) -> int:
    from domain import backups

    store, config = _context(settings)
    check = backups.verify(store, args.id, config)
    if not check.ok:
        print(f"lamplighter backups: backup {args.id} failed verification: {check.message}", file=sys.stderr)
        return cli.EXIT_FAILURE
    print(f"backup {args.id} verified: {check.message}")
    return 0


@_file_store_errors
def cmd_restore(args, settings) -> int:
    from domain import backups
    from storage.settings import redact_url

    store, config = _context(settings)
    check = backups.restore(store, args.id, args.into, force=args.force, config=config)
    for table, count in sorted(check.counts.items()):
        print(f"{table}  {count}")
    if not check.ok:
        print(f"lamplighter backups: restored into {redact_url(args.into)}, but {check.message}", file=sys.stderr)
        return cli.EXIT_FAILURE
    print(f"{check.message} into {redact_url(args.into)}")
    return 0
