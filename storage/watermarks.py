"""Watermarks (lamplighter.watermarks, migration 0014): the last id a log reader handled."""
from __future__ import annotations

from storage.queries import runner

execute = runner("watermarks")


def get(name: str) -> int:
    row = execute("watermark_get", {"name": name}).fetchone()
    return row[0] if row else 0


def set_position(name: str, position: int) -> None:
    execute("watermark_set", {"name": name, "position": position})
