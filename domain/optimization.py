"""Weekly database optimization (README "Operations jobs"): ANALYZE of the hot tables, a bloat
report, REINDEX CONCURRENTLY of indexes whose bloat is at least the configured ratio, and the
invalid ``_ccnew``/``_ccold`` indexes a failed concurrent reindex leaves behind dropped.

Every statement runs with a lock_timeout of at most a second: a statement waiting for a lock
makes every later one on the same table queue behind it, workers' claims included, so it gives
up (and says so in the report) rather than make them wait longer. A reindex that gave up leaves
an invalid ``_ccnew`` index; it is dropped in the same run.
"""
from __future__ import annotations

import structlog

from storage import optimization as db

log = structlog.get_logger("lamplighter.optimization")

# Below this size an index's bloat figure says little (a page or two of overhead looks like
# half the index) and a rebuild gains nothing: only a ratio of 0 ("rebuild everything") takes them.
MIN_INDEX_BYTES = 1024 * 1024

# The tables every job writes: the queue, its history, the audit log (job events are audit rows:
# lamplighter.job_events is a view over it), the outbox.
HOT_TABLES = ("dramatiq.queue", "lamplighter.job_history", "lamplighter.audit_log", "lamplighter.notifications")


def _drop_leftovers(session: db.Session, report: dict) -> None:
    for name in session.invalid_leftovers():
        try:
            session.drop_index_concurrently(name)
            report["dropped_invalid"].append(name)
        except (db.LockTimeout, db.StatementFailed) as exc:
            report["gave_up"].append({"statement": f"DROP INDEX CONCURRENTLY {name}", "reason": str(exc)})


def optimize(*, reindex_ratio: float, lock_timeout: float, tables: tuple[str, ...] = HOT_TABLES) -> dict:
    """Run the whole maintenance; returns the report (the job's history row keeps it)."""
    report: dict = {"analyzed": [], "reindexed": [], "dropped_invalid": [], "gave_up": [], "errors": [],
                    "tables": [], "indexes": []}
    with db.Session(lock_timeout=min(lock_timeout, 1.0)) as session:
        _drop_leftovers(session, report)
        for table in tables:
            try:
                session.analyze(table)
                report["analyzed"].append(table)
            except db.LockTimeout as exc:
                report["gave_up"].append({"statement": f"ANALYZE {table}", "reason": str(exc)})
            except db.StatementFailed as exc:
                report["errors"].append({"statement": f"ANALYZE {table}", "reason": str(exc)})
        report["tables"] = [{k: r[k] for k in ("table_name", "live_tuples", "dead_tuples", "dead_ratio",
                                               "total_bytes")} for r in session.table_bloat(list(tables))]
        estimates = session.index_estimates(list(tables))
        report["indexes"] = [{"index": e.index_name, "bytes": e.index_bytes, "bloat": round(e.estimated_bloat, 3),
                              "measured": e.measured} for e in estimates]
        for index in estimates:
            if index.estimated_bloat < reindex_ratio or (reindex_ratio > 0 and index.index_bytes < MIN_INDEX_BYTES):
                continue
            try:
                session.reindex_concurrently(index.index_name)
                report["reindexed"].append(index.index_name)
            except db.LockTimeout as exc:
                report["gave_up"].append({"statement": f"REINDEX INDEX CONCURRENTLY {index.index_name}",
                                          "reason": str(exc)})
            except db.StatementFailed as exc:
                report["errors"].append({"statement": f"REINDEX INDEX CONCURRENTLY {index.index_name}",
                                         "reason": str(exc)})
        _drop_leftovers(session, report)
    log.info("database_optimized", analyzed=len(report["analyzed"]), reindexed=len(report["reindexed"]),
             dropped_invalid=len(report["dropped_invalid"]), gave_up=len(report["gave_up"]),
             errors=len(report["errors"]))
    return report
