"""Audit-log archival: months older than the retention leave the database for the file store,
as compressed JSON Lines with a checksum manifest, verified by reading them back before the
month's partition is detached and dropped (README "Admin jobs").

Each month moves through steps recorded in lamplighter.audit_archives, one at a time, each
recorded only once it is done, so a run killed at any point resumes where it stopped:

    started -> exported -> verified -> detached -> done

Every step may run again without harm: the archive's key is fixed per month (a second export
overwrites the first, it never adds a copy), a detached month is not detached again, a dropped
table is not dropped again. Before the month leaves the log, and again before its table is
dropped, the table is compared with the manifest (rows, sum and range of ids): rows that arrived
after the export send the month back to export, so no row is dropped without being archived.

The file store and the rows come in as ports (``files``: storage/files.py's interface; ``store``:
:class:`ArchiveStore`), so a test can stop a real process between any two steps.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import tempfile
from datetime import date, datetime
from typing import Any, BinaryIO, Protocol

import structlog

from domain import audit
from storage import audit as audit_rows
from storage import audit_archive as archive_rows
from storage.audit_archive import MonthStats, Progress
from storage.files import ChecksumMismatch, FileMissing

log = structlog.get_logger("lamplighter.audit_archive")

FORMAT = "lamplighter.audit_archive.v1"
STEPS = ("started", "exported", "verified", "detached", "done")


class ArchiveError(Exception):
    """The archive read back does not match the manifest or the month's table."""


class Files(Protocol):
    def put(self, key: str, data: bytes | BinaryIO): ...

    def get(self, key: str) -> bytes: ...

    def copy_to(self, key: str, destination: BinaryIO): ...


class ArchiveStore:
    """The database side of archiving, as the domain uses it."""

    progress = staticmethod(archive_rows.progress)
    save = staticmethod(archive_rows.save)
    months_due = staticmethod(archive_rows.months_due)
    default_partition_months = staticmethod(archive_rows.default_partition_months)
    create_partition = staticmethod(audit.create_partition)
    stats = staticmethod(archive_rows.stats)
    rows_after = staticmethod(archive_rows.rows_after)
    current_month = staticmethod(audit_rows.current_month)

    def detach(self, month: date, *, by: str) -> str | None:
        return audit.archive_month(month, by=by)

    def drop(self, month: date, *, by: str) -> str | None:
        return audit.drop_archived_month(month, by=by)


def keys(month: date) -> tuple[str, str]:
    """The archive's and the manifest's keys in the file store."""
    base = f"audit/archive/{month:%Y}/audit_log_y{month:%Y}m{month:%m}"
    return f"{base}.jsonl.gz", f"{base}.manifest.json"


def cutoff(current_month: date, retention_months: int) -> date:
    """The first month kept: months before it are archived."""
    index = current_month.year * 12 + current_month.month - 1 - retention_months
    return date(index // 12, index % 12 + 1, 1)


def archive(files: Files, *, retention_months: int = 12, max_months: int = 3, batch_size: int = 5000,
            by: str = "system:audit.archive", store: ArchiveStore | None = None) -> dict[str, Any]:
    """Archive up to ``max_months`` months older than the retention, oldest first, resuming
    unfinished ones; counts for the job's history row."""
    if retention_months < 1:
        raise ValueError("retention_months must be at least 1: the current month is still written")
    store = store or ArchiveStore()
    first_kept = cutoff(store.current_month(), retention_months)
    for month in store.default_partition_months(first_kept):
        store.create_partition(month)  # its rows move out of the default partition into their month's table
    due = store.months_due(first_kept)[:max_months]
    report = {"months": [], "rows": 0, "resumed": 0}
    for month in due:
        progress = store.progress(month)
        if progress is not None and progress.step == "done":
            # Its table is back (rows with an old time written after the archive): archiving it
            # again would overwrite the archive at the month's key. Left for an operator, said loudly.
            log.warning("audit_archive_month_reappeared", month=f"{month:%Y-%m}", archived_rows=progress.rows)
            report.setdefault("reappeared", []).append(f"{month:%Y-%m}")
            continue
        report["resumed"] += progress is not None
        rows = archive_month(files, month, store=store, by=by, batch_size=batch_size)
        report["months"].append(f"{month:%Y-%m}")
        report["rows"] += rows
    return report


def archive_month(files: Files, month: date, *, store: ArchiveStore, by: str, batch_size: int = 5000) -> int:
    """Take one month through the remaining steps; the rows in its archive."""
    progress = store.progress(month)
    step = progress.step if progress else None
    if step is None:
        store.save(month, "started")
        step = "started"
    for _ in range(4 * len(STEPS)):  # a month sent back to export more often than this is being written
        if step == "done":
            return store.progress(month).rows
        step = _advance(files, month, step, store=store, by=by, batch_size=batch_size)
    raise ArchiveError(f"audit month {month:%Y-%m} keeps changing under the archive; try again later")


def _advance(files: Files, month: date, step: str, *, store: ArchiveStore, by: str, batch_size: int) -> str:
    if step == "started":
        data_key, manifest_key, manifest = export(files, month, store=store, batch_size=batch_size)
        store.save(month, "exported", data_key=data_key, manifest_key=manifest_key, rows=manifest["rows"],
                   sha256=manifest["file"]["sha256"])
        return "exported"
    progress: Progress = store.progress(month)
    if step == "exported":
        stats = store.stats(month)
        if stats is None:
            raise ArchiveError(f"audit month {month:%Y-%m}: its table is gone before it was verified")
        try:
            manifest = verify(files, progress.manifest_key)
        except (ArchiveError, FileMissing, ChecksumMismatch, EOFError, OSError, ValueError) as exc:
            log.warning("audit_archive_unreadable", month=f"{month:%Y-%m}", error=str(exc))
            store.save(month, "started")  # the month is still in the database: export it again
            return "started"
        if not _matches(manifest, stats):
            store.save(month, "started")  # the month changed since its export: export it again
            return "started"
        store.save(month, "verified")
        return "verified"
    manifest = json.loads(files.get(progress.manifest_key))
    stats = store.stats(month)
    if step == "verified":
        if stats is None:
            raise ArchiveError(f"audit month {month:%Y-%m}: its table is gone before it was detached")
        if not _matches(manifest, stats):
            store.save(month, "started")
            return "started"
        store.detach(month, by=by)
        store.save(month, "detached")
        return "detached"
    if step == "detached":
        if stats is not None:  # None: dropped by a run that stopped before recording it
            if not _matches(manifest, stats):
                store.save(month, "started")
                return "started"
            store.drop(month, by=by)
        store.save(month, "done")
        return "done"
    raise ArchiveError(f"audit month {month:%Y-%m}: unknown step {step!r}")


def _matches(manifest: dict, stats: MonthStats | None) -> bool:
    if stats is None:
        return False
    return (manifest["rows"], manifest["id_sum"], manifest["first_id"], manifest["last_id"]) == (
        stats.rows, str(stats.id_sum), stats.first_id, stats.last_id)


def _line(row: dict[str, Any]) -> bytes:
    plain = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    return (json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def export(files: Files, month: date, *, store: ArchiveStore, batch_size: int = 5000) -> tuple[str, str, dict]:
    """Write the month's rows (id order, one JSON object a line, gzip) and then its manifest."""
    data_key, manifest_key = keys(month)
    content = hashlib.sha256()
    count = id_sum = 0
    first_id = last_id = None
    with tempfile.TemporaryFile() as raw:
        # mtime=0: the same rows give the same bytes, whichever run wrote them.
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
            after = 0
            while batch := store.rows_after(month, after, batch_size):
                for row in batch:
                    line = _line(row)
                    compressed.write(line)
                    content.update(line)
                    count += 1
                    id_sum += row["id"]
                first_id = batch[0]["id"] if first_id is None else first_id
                after = last_id = batch[-1]["id"]
        raw.seek(0)
        stored = files.put(data_key, raw)
    manifest = {"format": FORMAT, "month": f"{month:%Y-%m}", "table": f"lamplighter.audit_log_y{month:%Y}m{month:%m}",
                "rows": count, "id_sum": str(id_sum), "first_id": first_id, "last_id": last_id,
                "file": {"key": data_key, "bytes": stored.size, "sha256": stored.sha256,
                         "content_sha256": content.hexdigest(), "encoding": "gzip", "format": "jsonl"}}
    files.put(manifest_key, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return data_key, manifest_key, manifest


def verify(files: Files, manifest_key: str) -> dict:
    """Read the archive back and check it against its manifest: the file's checksum, the
    content's, the row count, and ids strictly increasing (no row twice) with the manifest's sum
    and range. Returns the manifest; raises ArchiveError on any difference."""
    manifest = json.loads(files.get(manifest_key))
    described = manifest["file"]
    with tempfile.TemporaryFile() as raw:
        stored = files.copy_to(described["key"], raw)  # the store checks its own recorded checksum
        if stored.sha256 != described["sha256"]:
            raise ArchiveError(f"{described['key']}: checksum {stored.sha256} is not the manifest's")
        raw.seek(0)
        content = hashlib.sha256()
        count = id_sum = 0
        first_id = last_id = None
        with gzip.GzipFile(fileobj=raw, mode="rb") as lines:
            for line in lines:
                content.update(line)
                row_id = json.loads(line)["id"]
                if last_id is not None and row_id <= last_id:
                    raise ArchiveError(f"{described['key']}: row {row_id} out of order or twice")
                first_id = row_id if first_id is None else first_id
                last_id = row_id
                count += 1
                id_sum += row_id
    found = {"rows": count, "id_sum": str(id_sum), "first_id": first_id, "last_id": last_id,
             "content_sha256": content.hexdigest()}
    expected = {k: manifest[k] for k in ("rows", "id_sum", "first_id", "last_id")}
    expected["content_sha256"] = described["content_sha256"]
    if found != expected:
        raise ArchiveError(f"{described['key']}: read back {found}, manifest says {expected}")
    return manifest

