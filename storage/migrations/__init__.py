"""Versioned schema migrations, applied in order by peewee's runner (storage.schema.migrate).

Each ``NNNN_name.py`` defines ``up(migrator, db)``; most run the ``.sql`` file of the same name,
so the DDL stays readable. Every statement is idempotent (IF NOT EXISTS / OR REPLACE) and
additive, so the release step can run while the previous release's workers still run.
"""
from pathlib import Path

DIRECTORY = Path(__file__).parent


def run_sql_file(db, name: str) -> None:
    # A raw cursor without parameters: the DDL contains '%' (LIKE patterns), which the driver
    # would otherwise read as placeholders.
    db.cursor().execute((DIRECTORY / name).read_text())
