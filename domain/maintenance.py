"""Platform maintenance: the ping that proves enqueue -> claim -> actor -> domain -> history."""
from __future__ import annotations

from storage.clock import Clock


def ping(clock: Clock, note: str | None = None) -> dict:
    """Answer with the time the job ran; the answer lands in the history row's result_summary."""
    answer = {"pong": clock.now().isoformat()}
    if note is not None:
        answer["note"] = note
    return answer
