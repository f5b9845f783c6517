"""Watermarks (lamplighter.watermarks, migration 0014): the last id a log reader handled."""
from __future__ import annotations

from storage.queries import runner

execute = runner("watermarks")


def get(name: str, *, first=None) -> int:
    """Where the reader ``name`` stopped. Before its first run: ``first()`` (0 without one), kept
    at once, so a reader added to a deployment with a long log starts near the end of it, not
    at its beginning."""
    row = execute("watermark_get", {"name": name}).fetchone()
    if row:
        return row[0]
    if first is None:
        return 0
    position = first()
    set_position(name, position)
    return position


def set_position(name: str, position: int) -> None:
    execute("watermark_set", {"name": name, "position": position})
