"""Backups: a logical dump to file storage, checked by restoring it, kept N daily and M monthly
(README "Operations jobs").

:func:`create` dumps (``pg_dump -Fc`` of a version that fits the server, storage/dumps.py), stores
the file with its SHA-256 and restores it into a scratch database, comparing the row counts of
the key tables with the counts taken in the dump's own snapshot. Only then is the backup
``verified``. A dump that fails or is cut off (a deploy's SIGTERM reaches pg_dump too) is marked
``failed``, never stored, and the job is retried. The file store comes in as a port (``files``:
put, copy_to, delete), like the domain's other ports.
"""
from __future__ import annotations

import contextlib
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import structlog

from domain.errors import Conflict, DomainError, InvalidInput, NotFound
from storage import backups as backup_rows
from storage import dumps
from storage import files as file_store
from storage.backups import Backup

log = structlog.get_logger("lamplighter.backups")

# The tables whose row counts a restore check compares: what the platform cannot lose.
KEY_TABLES = ("dramatiq.queue", "lamplighter.job_history", "lamplighter.job_events", "lamplighter.schedules",
              "lamplighter.tenants", "lamplighter.users", "lamplighter.api_tokens", "lamplighter.audit_log",
              "lamplighter.notifications", "lamplighter.alerts", "lamplighter.licenses")


class BackupError(DomainError):
    """A backup could not be made or checked."""


class BackupInterrupted(BackupError):
    """The dump was cut off (SIGTERM): nothing was stored; try again."""


class BackupCheckFailed(BackupError):
    """The dump was stored but its restore check failed: it is not a good backup."""


class BackupNotFound(NotFound):
    pass


class TargetNotEmpty(Conflict):
    pass


@dataclass(frozen=True)
class Config:
    database_url: str
    scratch_url: str = ""  # empty: a scratch database created (and dropped) on the same server
    pg_bin_dir: str = ""
    lock_wait_timeout: float = 60.0
    keep_daily: int = 7
    keep_monthly: int = 12
    tables: tuple[str, ...] = KEY_TABLES
    abandoned_seconds: float = 6 * 3600.0  # a running attempt older than this was cut off


def config(current, database_url: str) -> Config:
    """The backup configuration from the settings (``current``) and the database to back up."""
    ops = current.operations
    return Config(database_url=database_url, scratch_url=ops.backup_scratch_url, pg_bin_dir=ops.backup_pg_bin_dir,
                  lock_wait_timeout=ops.backup_lock_wait_timeout, keep_daily=ops.backup_keep_daily,
                  keep_monthly=ops.backup_keep_monthly)


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str
    counts: dict = field(default_factory=dict)  # table -> rows found after the restore


def file_key(backup_id: int, started_at: datetime) -> str:
    at = started_at.astimezone(timezone.utc)
    return f"backups/{at:%Y/%m}/lamplighter-{at:%Y%m%dT%H%M%SZ}-{backup_id}.dump"


def create(files, config: Config) -> dict:
    """Dump, store, restore-check, apply retention. Counts for the job's history row."""
    backup_id, started_at, abandoned = backup_rows.start(abandoned_seconds=config.abandoned_seconds)
    with tempfile.TemporaryDirectory(prefix="lamplighter-backup-") as tmp:
        path = Path(tmp) / "backup.dump"
        try:
            dumped = dumps.dump(config.database_url, path, tables=list(config.tables),
                                configured_dir=config.pg_bin_dir, lock_wait_timeout=config.lock_wait_timeout)
            key = file_key(backup_id, started_at)
            with path.open("rb") as source:
                stored = files.put(key, source)
        except dumps.DumpInterrupted as exc:
            backup_rows.failed(backup_id, error=str(exc))
            log.warning("backup_interrupted", backup_id=backup_id, error=str(exc))
            raise BackupInterrupted(f"backup {backup_id}: {exc}") from None
        except BaseException as exc:  # an error, a time limit, a shutdown: never left looking good
            backup_rows.failed(backup_id, error=f"{type(exc).__name__}: {exc}")
            raise
        backup_rows.dumped(backup_id, file_key=key, size_bytes=stored.size, sha256=stored.sha256,
                           server_version=dumped.server_version, pg_dump_version=dumped.tool.version,
                           row_counts=dumped.row_counts)
        check = restore_check(path, dumped.row_counts, config, label=f"backup_{backup_id}")
    backup_rows.checked(backup_id, ok=check.ok, error=None if check.ok else check.message)
    deleted = apply_retention(files, config)
    log.info("backup_created", backup_id=backup_id, verified=check.ok, size_bytes=stored.size,
             pg_dump=dumped.tool.version, deleted=deleted)
    if not check.ok:
        raise BackupCheckFailed(f"backup {backup_id}: restore check failed: {check.message}")
    return {"backup_id": backup_id, "size_bytes": stored.size, "tables": len(dumped.row_counts),
            "rows": sum(dumped.row_counts.values()), "verified": 1, "deleted": deleted, "abandoned": abandoned}


def restore_check(path: Path, expected: dict, config: Config, *, label: str) -> Check:
    """Restore ``path`` into the scratch database and compare the key tables' row counts."""
    scratch = (contextlib.nullcontext(config.scratch_url) if config.scratch_url else
               dumps.ScratchDatabase(config.database_url, f"lamplighter_restore_check_{label}_{uuid.uuid4().hex[:8]}"))
    try:
        with scratch as url:
            dumps.restore(path, url, clean=bool(config.scratch_url), configured_dir=config.pg_bin_dir)
            counts = dumps.counts_at(url, list(expected))
    except dumps.DumpError as exc:
        return Check(False, str(exc))
    differ = {t: {"dumped": n, "restored": counts.get(t)} for t, n in expected.items() if counts.get(t) != n}
    if differ:
        return Check(False, f"row counts differ: {differ}", counts)
    return Check(True, f"restored; row counts equal in {len(expected)} tables", counts)


def _download(files, backup: Backup, directory: Path) -> Path:
    if not backup.file_key or backup.status in ("running", "failed", "deleted"):
        raise InvalidInput(f"backup {backup.id} has no file to use (status {backup.status})")
    path = directory / "backup.dump"
    with path.open("wb") as out:
        stored = files.copy_to(backup.file_key, out)  # raises ChecksumMismatch on a changed file
    if backup.sha256 and stored.sha256 and stored.sha256 != backup.sha256:
        raise file_store.ChecksumMismatch(f"{backup.file_key}: SHA-256 differs from the one recorded at backup")
    return path


def get(backup_id: int) -> Backup:
    backup = backup_rows.get(backup_id)
    if backup is None:
        raise BackupNotFound(f"no backup {backup_id}")
    return backup


def verify(files, backup_id: int, config: Config) -> Check:
    """Check a stored backup again: its checksum, then a restore check. The outcome is recorded
    (verified or unverified)."""
    backup = get(backup_id)
    with tempfile.TemporaryDirectory(prefix="lamplighter-verify-") as tmp:
        try:
            path = _download(files, backup, Path(tmp))
        except file_store.ChecksumMismatch as exc:
            check = Check(False, f"corrupted: {exc}")
        except file_store.FileMissing as exc:
            check = Check(False, f"missing: {exc}")
        else:
            check = restore_check(path, backup.row_counts or {}, config, label=f"verify_{backup_id}")
    backup_rows.checked(backup_id, ok=check.ok, error=None if check.ok else check.message)
    (log.info if check.ok else log.warning)("backup_verified", backup_id=backup_id, ok=check.ok)
    return check


def restore(files, backup_id: int, into_url: str, *, force: bool = False, config: Config) -> Check:
    """Restore a backup into the database at ``into_url``: refused when it holds anything,
    unless ``force`` (then the backup's objects are dropped and recreated)."""
    backup = get(backup_id)
    if not force and not dumps.is_empty(into_url):
        raise TargetNotEmpty("the target database is not empty; restore into a fresh database, or pass --force "
                             "to drop and recreate the backup's objects there")
    with tempfile.TemporaryDirectory(prefix="lamplighter-restore-") as tmp:
        path = _download(files, backup, Path(tmp))
        try:
            dumps.restore(path, into_url, clean=force, configured_dir=config.pg_bin_dir)
        except dumps.DumpError as exc:
            raise BackupError(str(exc)) from None
    expected = backup.row_counts or {}
    counts = dumps.counts_at(into_url, list(expected))
    differ = [t for t, n in expected.items() if counts.get(t) != n]
    return Check(not differ, f"row counts differ in {', '.join(differ)}" if differ else
                 f"restored backup {backup_id}; row counts equal in {len(expected)} tables", counts)


def retained(backups: list[Backup], *, keep_daily: int, keep_monthly: int) -> set[int]:
    """Ids of the verified backups to keep: the newest of each of the last ``keep_daily`` days
    that have one, and of each of the last ``keep_monthly`` months (UTC)."""
    good = sorted((b for b in backups if b.status == "verified"), key=lambda b: (b.started_at, b.id), reverse=True)
    keep: set[int] = set()
    for period, count in ((lambda b: b.started_at.astimezone(timezone.utc).date(), keep_daily),
                          (lambda b: b.started_at.astimezone(timezone.utc).strftime("%Y-%m"), keep_monthly)):
        seen: list = []
        for backup in good:
            when = period(backup)
            if when not in seen:
                if len(seen) == count:
                    break
                seen.append(when)
                keep.add(backup.id)
    return keep


def apply_retention(files, config: Config) -> int:
    """Delete the files of verified backups past the retention, and of unverified ones older
    than the newest verified one. Returns how many were deleted."""
    backups = backup_rows.list_backups(limit=100_000)
    keep = retained(backups, keep_daily=config.keep_daily, keep_monthly=config.keep_monthly)
    newest_good = max((b.started_at for b in backups if b.status == "verified"), default=None)
    deleted = 0
    for backup in backups:
        stale = (backup.status == "verified" and backup.id not in keep) or (
            backup.status == "unverified" and newest_good is not None and backup.started_at < newest_good)
        if stale:
            if backup.file_key:
                with contextlib.suppress(file_store.FileMissing):
                    files.delete(backup.file_key)
            backup_rows.deleted(backup.id)
            deleted += 1
    return deleted
