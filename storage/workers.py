"""Worker processes: registration, heartbeat, rescue of jobs held by dead workers, listing."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.queries import queries, rows, runner

SQL = queries("workers")
execute = runner("workers")


@dataclass(frozen=True)
class WorkerInfo:
    id: uuid.UUID
    hostname: str
    pid: int
    queues: list[str]
    version: str
    started_at: datetime
    heartbeat_age: float
    stopping: bool
    running_jobs: int


@dataclass(frozen=True)
class Rescue:
    workers_expired: int
    jobs_rescued: int
    attempts_lost: int
    # Rescued jobs whose start was not recorded: a `rescued` event each, no attempt counted.
    unstarted_noted: int = 0


def register(conn, *, worker_id: str, hostname: str, pid: int, queues: list[str], version: str) -> None:
    execute("worker_register", dict(worker_id=worker_id, hostname=hostname, pid=pid, queues=queues,
                                    version=version), conn=conn)


def heartbeat(conn, *, worker_id: str, stopping: bool = False) -> bool:
    """Returns False if this worker's row was gone (declared dead by another worker)."""
    return execute("worker_heartbeat", dict(worker_id=worker_id, stopping=stopping), conn=conn).fetchone() is not None


def peers(conn, *, lease_seconds: float) -> dict[str, list[str]]:
    """Live, not stopping worker ids per queue, sorted."""
    return {row[0]: list(row[1]) for row in
            execute("worker_peers", dict(lease_seconds=lease_seconds), conn=conn).fetchall()}


def unregister(conn, *, worker_id: str) -> None:
    execute("worker_unregister", dict(worker_id=worker_id), conn=conn)


def rescue_lost(conn, *, lease_seconds: float, server_grace_seconds: float) -> Rescue:
    """Declare workers silent for a lease dead and hand their jobs back (not within
    ``server_grace_seconds`` of the server's start)."""
    found = rows(execute("worker_rescue_lost", dict(lease_seconds=lease_seconds,
                                                    server_grace_seconds=server_grace_seconds), conn=conn))
    return Rescue(**found[0])


def reconcile(conn, *, worker_id: str, lease_seconds: float, known: list[str]) -> Rescue:
    """Hand back the rows ``worker_id`` holds as running that are not in ``known``."""
    found = rows(execute("worker_reconcile", dict(worker_id=worker_id, lease_seconds=lease_seconds, known=known),
                         conn=conn))
    return Rescue(workers_expired=0, **found[0])


def register_actors(conn, actors: list[dict]) -> None:
    execute("actor_register_many", dict(actors=json.dumps(actors)), conn=conn)


def list_workers() -> list[WorkerInfo]:
    return [WorkerInfo(**row) for row in rows(execute("worker_list"))]
