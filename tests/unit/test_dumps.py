"""pg_dump/pg_restore never see a password on their command line (other users' `ps` would): it
goes through PGPASSWORD; and the version rule picks the oldest fitting major."""
from pathlib import Path

from storage import dumps


def test_the_password_travels_in_the_environment_not_the_url():
    target, env = dumps._libpq("postgresql://backup:s%40cret@db.example:5432/app?sslmode=require")
    assert target == "postgresql://backup@db.example:5432/app?sslmode=require"
    assert env["PGPASSWORD"] == "s@cret"
    target, env = dumps._libpq("postgresql://postgres@/postgres?host=/run/pg&port=5433")
    assert target == "postgresql://postgres@/postgres?host=/run/pg&port=5433"


def test_the_oldest_major_at_or_above_the_servers_is_chosen(monkeypatch):
    tools = {Path("/a/pg_dump"): dumps.Tool(Path("/a/pg_dump"), 18, "18.6"),
             Path("/b/pg_dump"): dumps.Tool(Path("/b/pg_dump"), 15, "15.20"),
             Path("/c/pg_dump"): dumps.Tool(Path("/c/pg_dump"), 16, "16.4")}
    monkeypatch.setattr(dumps, "candidates", lambda name, configured="": list(tools))
    monkeypatch.setattr(dumps, "tool_version", tools.get)
    assert dumps.find_tool("pg_dump", 15).major == 15
    assert dumps.find_tool("pg_dump", 16).major == 16
    assert dumps.find_tool("pg_dump", 17).major == 18
