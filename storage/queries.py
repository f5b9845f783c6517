"""Named SQL, one file per concern under storage/sql/, loaded once.

A file holds sections headed ``-- name: job_claim_batch --``; ``queries("jobs")["job_claim_batch"]``
returns the text. Parameters use psycopg2's ``%(name)s`` style.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

SQL_DIRECTORY = Path(__file__).parent / "sql"
_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*--\s*$", re.MULTILINE)


@functools.cache
def queries(concern: str) -> dict[str, str]:
    text = (SQL_DIRECTORY / f"{concern}.sql").read_text()
    parts = _HEADER.split(text)
    named = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in named:
            raise ValueError(f"storage/sql/{concern}.sql: query {name!r} defined twice")
        named[name] = body.strip()
    return named
