"""Bench workload: the 4-hourly integrations health sweep over 100,000 active integrations.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/health_sweep.py \
        [--integrations 100000] [--rounds 3] [--out FILE.json]

Creates a throwaway database on DATABASE_URL's server, migrates it, connects one integration
through the domain (tokens encrypted as in production) and copies it to ``--integrations`` rows
in SQL. Then runs the sweep actor's body (``integrations.sweep_health``: a page of ids, one
``enqueue_many`` of unique ``integrations.check_health`` jobs per page) as the scheduler's job
would, with the shipped settings:

* ``first``: no check is waiting, so every integration gets a new job;
* ``again``: every check is still waiting, so every unique key is held (no new job; the
  holder's id comes back and the conflict is on record);
* ``after_half_ran``: half the checks completed since (half new jobs, half held).

Reports seconds and integrations per second for each, and the jobs queued afterwards (must be
exactly one per active integration).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

from harness.scratch import scratch_database  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--integrations", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("bench/health_sweep.py: set DATABASE_URL to a PostgreSQL server it may create a database on",
              file=sys.stderr)
        return 2
    with scratch_database(server_url, "ll_bench_health", LAMPLIGHTER_LOG_FORMAT="json") as (url, _):
        import actors
        from actors.integrations import JOBS
        from domain import integrations, tenants
        from domain.integrations import TokenResponse
        from storage import settings

        tenants.create_tenant("bench", "Bench", by="bench")
        integrations.save_provider(name="bench", token_url="http://127.0.0.1:9/token",
                                   userinfo_url="http://127.0.0.1:9/userinfo", files_url="http://127.0.0.1:9/files",
                                   client_id="bench", client_secret="bench-secret", by="bench")
        integrations.connect(tenant_id="bench", provider="bench", name="i0", jobs=JOBS, by="bench",
                             tokens=TokenResponse(access_token="a" * 40, refresh_token="r" * 40, expires_in=3600),
                             settings=settings.get().integrations)
        conn = psycopg2.connect(url)
        conn.autocommit = True
        sql(conn, """
            INSERT INTO lamplighter.integrations (tenant_id, provider_id, name, access_token, refresh_token, expires_at)
            SELECT i.tenant_id, i.provider_id, 'i' || n, i.access_token, i.refresh_token, i.expires_at
            FROM lamplighter.integrations i, generate_series(1, %s) AS n WHERE i.name = 'i0'""",
            (args.integrations - 1,))
        sql(conn, "DELETE FROM dramatiq.queue")  # the connect's own refresh and indexing jobs
        sql(conn, "VACUUM ANALYZE lamplighter.integrations")
        sweep = actors.integrations.sweep_health.fn
        rounds = {}
        rounds["first"] = timed(sweep)
        rounds["again"] = timed(sweep)
        sql(conn, """UPDATE dramatiq.queue SET state = 'completed', finished_at = lamplighter.now()
                     WHERE actor_name = 'integrations.check_health' AND message_id IN (
                         SELECT message_id FROM dramatiq.queue WHERE actor_name = 'integrations.check_health'
                         ORDER BY message_id LIMIT %s)""", (args.integrations // 2,))
        rounds["after_half_ran"] = timed(sweep)
        [(waiting,)] = sql(conn, "SELECT count(*) FROM dramatiq.queue WHERE actor_name = 'integrations.check_health' "
                                 "AND state = 'queued'")
        [(conflicts,)] = sql(conn, "SELECT count(*) FROM lamplighter.job_events WHERE event = 'unique_conflict'")
        for figures in rounds.values():
            figures["integrations_per_s"] = round(args.integrations / figures["seconds"])
        result = {"integrations": args.integrations, "rounds": rounds, "checks_waiting_after": waiting,
                  "unique_conflicts_recorded": conflicts,
                  "server": sql(conn, "SHOW server_version")[0][0], "cpus": os.cpu_count()}
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        ok = waiting == args.integrations and all(r["queued"] == args.integrations for r in rounds.values())
        return 0 if ok else 1


def timed(sweep) -> dict:
    started = time.perf_counter()
    outcome = sweep()
    return {"seconds": round(time.perf_counter() - started, 2), "queued": outcome["queued"]}


def sql(conn, text, params=None):
    cur = conn.cursor()
    cur.execute(text, params)
    return cur.fetchall() if cur.description else []


if __name__ == "__main__":
    raise SystemExit(main())
