"""Claim tokens, claim indexes that skip saturated concurrency keys, one rescue function, and
re-sends that cannot take over a live job."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0007_claim_tokens.sql")
