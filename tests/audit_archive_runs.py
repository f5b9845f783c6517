"""Audit archival as the tests drive it: seeding an old month, reading the archive back, and a
real process that runs the archive and stops at a chosen point (for kill -9):

    python -m tests.audit_archive_runs STOP_AT     (cwd: the repository; DATABASE_URL and
                                                    LAMPLIGHTER_FILES_URL in the environment)

STOP_AT is ``data_written`` (the archive file is in the store, its manifest is not, nothing is
recorded), ``detached`` (the month left the log; not yet recorded) or ``dropped`` (its table is
gone; not yet recorded), or ``none``. At that point the process prints ``stopped at STOP_AT`` and
waits for its kill; its work so far is committed, as a crash would leave it.
"""
from __future__ import annotations

import gzip
import json
import sys
import threading
from datetime import date

MONTH = date(2025, 10, 1)  # more than 12 months before the tests' real time (December 2026)


def seed(sql, rows: int, *, first_day: int = 1) -> list[int]:
    """``rows`` audit rows in MONTH (its partition created first); their ids."""
    from domain import audit

    audit.create_partition(MONTH)
    found = sql("INSERT INTO lamplighter.audit_log (at, actor, action, target_type, target_id, details) "
                "SELECT timestamptz '2025-10-01 00:00:00+00' + make_interval(days => %s - 1, mins => n), "
                "'user:' || (n %% 7), 'user.signed_in', 'user', (n %% 7)::text, jsonb_build_object('n', n) "
                "FROM generate_series(1, %s) AS n RETURNING id", (first_day, rows))
    return sorted(row[0] for row in found)


def archived_ids(store, data_key: str) -> list[int]:
    return [json.loads(line)["id"] for line in gzip.decompress(store.get(data_key)).splitlines()]


def _stop(point: str, at: str) -> None:
    if point == at:
        print(f"stopped at {point}", flush=True)
        threading.Event().wait()  # until killed


def main(stop_at: str) -> int:
    from domain import audit_archive
    from storage import files
    from storage import settings as settings_module

    store = files.open_store(settings_module.get())

    class StoppingFiles:
        def put(self, key, data):
            stored = store.put(key, data)
            if key.endswith(".jsonl.gz"):
                _stop(stop_at, "data_written")
            return stored

        def get(self, key):
            return store.get(key)

        def copy_to(self, key, destination):
            return store.copy_to(key, destination)

    class StoppingStore(audit_archive.ArchiveStore):
        def detach(self, month, *, by):
            done = super().detach(month, by=by)
            _stop(stop_at, "detached")
            return done

        def drop(self, month, *, by):
            done = super().drop(month, by=by)
            _stop(stop_at, "dropped")
            return done

    report = audit_archive.archive(StoppingFiles(), batch_size=100, store=StoppingStore())
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
