"""Queue controls an operator uses: pause and resume, each audited."""
from __future__ import annotations

from domain import audit
from storage import connection
from storage import queues as queue_rows


def set_paused(name: str, paused: bool, *, by: str, source: str | None = None) -> None:
    """A paused queue is not claimed from; jobs keep arriving."""
    with connection.transaction():
        queue_rows.set_paused(name, paused, by=by)
        audit.record(by, "queue.paused" if paused else "queue.resumed", target_type="queue", target_id=name,
                     source=source)
