"""Retention: finished jobs and their history are deleted in bounded batches (README "Pruning").

Plain Python: the batches come in as callables, each deleting one batch in its own short
transaction and returning ``(jobs, history_rows)`` it deleted. A job's events are audit rows
(domain/audit.py): they outlive the job.
"""
from __future__ import annotations

from typing import Callable, Mapping

Batch = Callable[[], tuple[int, int]]


def until_done(run_batch: Callable[[], int], max_batches: int) -> tuple[int, int]:
    """Run ``run_batch`` (one short transaction, returning the rows it touched) until a batch
    finds nothing, or ``max_batches`` times so one run stays bounded (the next run continues).
    Returns (rows, batches that found something)."""
    total = batches = 0
    for _ in range(max_batches):
        done = run_batch()
        if done == 0:
            break
        total += done
        batches += 1
    return total, batches


def prune(batches: Mapping[str, Batch], *, max_batches: int = 1000) -> dict[str, dict[str, int]]:
    """Run each kind's batch until it deletes nothing (or ``max_batches``, so one run stays
    bounded; the next run continues). Returns the counts per kind, for the history row."""
    report = {}
    for kind, run_batch in batches.items():
        totals = {"jobs": 0, "history_rows": 0, "batches": 0}
        for _ in range(max_batches):
            jobs, history_rows = run_batch()
            if jobs == 0:
                break
            totals["jobs"] += jobs
            totals["history_rows"] += history_rows
            totals["batches"] += 1
        report[kind] = totals
    return report
