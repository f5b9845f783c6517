"""The connection budget of a formation: how many PostgreSQL connections `web=2,worker=4x8,
scheduler=1` opens at most, process by process, computed from the settings. `lamplighter config
--formation` prints it and refuses a formation over the plan's limit (README "Deploy")."""
from __future__ import annotations

import dataclasses
import re

KINDS = ("web", "worker", "scheduler")
_ENTRY = re.compile(r"^(web|worker|scheduler)=(\d+)(?:x(\d+))?$")


class FormationError(ValueError):
    """A formation spec that cannot be read."""


@dataclasses.dataclass(frozen=True)
class Line:
    kind: str
    dynos: int
    per_dyno: int
    how: str

    @property
    def total(self) -> int:
        return self.dynos * self.per_dyno


def parse(spec: str) -> dict[str, tuple[int, int | None]]:
    """``web=2,worker=4x8,scheduler=1`` -> {kind: (dynos, threads per worker process or None)}."""
    found: dict[str, tuple[int, int | None]] = {}
    for entry in (part.strip() for part in spec.split(",") if part.strip()):
        match = _ENTRY.match(entry)
        if not match:
            raise FormationError(f"{entry!r}: expected web=N, worker=N or worker=NxTHREADS, scheduler=N")
        kind, dynos, threads = match.group(1), int(match.group(2)), match.group(3)
        if kind in found:
            raise FormationError(f"{kind} named twice")
        if threads is not None and kind != "worker":
            raise FormationError(f"{entry!r}: only worker takes xTHREADS")
        if threads is not None and int(threads) < 1:
            raise FormationError(f"{entry!r}: threads must be at least 1")
        found[kind] = (dynos, int(threads) if threads is not None else None)
    if not found:
        raise FormationError("empty formation")
    return found


def worker_process(threads: int, listen: bool) -> int:
    """One worker process: one claim connection for every queue it consumes, one LISTEN session
    unless polling, the heartbeat, the finisher, and one per thread whose jobs use the database.
    However many queues it consumes."""
    return 1 + (1 if listen else 0) + 2 + threads


def budget(spec: str, settings) -> list[Line]:
    web_pool = settings.web.pool_size
    lines = []
    for kind, (dynos, threads) in parse(spec).items():
        if kind == "worker":
            threads = threads or settings.worker_threads
            each = worker_process(threads, settings.listen)
            lines.append(Line(kind, dynos, each * settings.worker_processes,
                              f"{settings.worker_processes} processes x (claims 1 + "
                              f"{1 if settings.listen else 0} listen + 2 + {threads} threads)"))
        elif kind == "web":
            lines.append(Line(kind, dynos, web_pool + 2, f"pool {web_pool} + readiness 1 + /metrics 1"))
        else:
            lines.append(Line(kind, dynos, 1, "leader loop 1"))
    lines.append(Line("release", 1, 1, "during a deploy only"))
    return lines
