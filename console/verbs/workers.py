"""`lamplighter workers`: the live worker processes, from storage/workers.py's registry."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from console import cli

if TYPE_CHECKING:
    from storage.workers import WorkerInfo

TABLE_COLUMNS = ["hostname", "pid", "queues", "version", "heartbeat_age_s", "running_jobs", "stopping", "id"]


def register(verbs) -> None:
    ws = verbs.add_parser("workers", help="live workers: host, pid, queues, version, heartbeat, running jobs")
    ws.add_argument("--json", action="store_true")
    ws.set_defaults(run=cmd_workers)


def workers_view() -> list[WorkerInfo]:
    """Every registered worker process, by host and pid, with its heartbeat's age and running jobs."""
    from storage import workers

    return workers.list_workers()


def table_rows(view: list[WorkerInfo]) -> list[dict]:
    rows = []
    for worker in view:
        row = asdict(worker)
        row["heartbeat_age_s"] = float(row.pop("heartbeat_age"))  # numeric from SQL; one decimal in the table
        rows.append(row)
    return rows


def cmd_workers(args, settings) -> int:
    view = workers_view()
    if args.json:
        cli.print_json(view)
        return 0
    print(cli.table(table_rows(view), TABLE_COLUMNS))
    return 0
