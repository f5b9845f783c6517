"""Platform maintenance: the ping that proves enqueue -> claim -> actor -> domain -> history."""
from __future__ import annotations

from storage.clock import Clock


def ping(clock: Clock, note: str | None = None) -> dict:
    """Answer with the time the job ran; the answer lands in the history row's result_summary."""
    answer = {"pong": clock.now().isoformat()}
    if note is not None:
        answer["note"] = note
    return answer


def rotate_secrets(columns: list, rotate_batch, *, max_batches: int = 10_000) -> dict[str, int]:
    """Re-encrypt every encrypted column under the primary key, batch by batch (each batch its own
    short transaction). ``rotate_batch(column) -> int`` does one batch. Returns counts per column."""
    counts = {}
    for column in columns:
        total = 0
        for _ in range(max_batches):
            done = rotate_batch(column)
            total += done
            if done == 0:
                break
        counts[f"{column.table}.{column.value_column}"] = total
    return counts
