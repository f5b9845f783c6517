"""Many worker dynos on one PostgreSQL: 1, 2, 4 and 8 worker processes (8 threads each, each
process its own `dramatiq bench_app -p 1 -t 8`, as separate dynos run) drain the same backlog of
no-op jobs. Reported per formation: jobs per second, jobs per worker CPU-second and per server
CPU-second, and the most connections in use during the drain (pg_stat_activity), beside what
`console/formation.py` budgets for it. This machine has 2 cores: absolute throughput cannot scale
with processes here; the CPU cost per job and the connection count are what carry over. Run on
demand (not a test):

    bench/.venvs/lamplighter/bin/python bench/dynos.py [--jobs 20000] [--processes 1,2,4,8]

Writes bench/results/<date>_dynos.json (or --out). Shipped defaults (INFO logs) throughout.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from harness.pgcluster import Cluster  # noqa: E402
from profile import cpu_seconds, prepare_drain, server_pids, source_state, tree  # noqa: E402

THREADS = 8


def drain(cluster, processes: int, jobs: int) -> dict:
    db = f"dynos{processes}"
    url = cluster.fresh_db(db)
    env = prepare_drain(url, Path(cluster.root) / f"done{processes}", jobs)
    bin_dir = Path(sys.executable).parent
    log = open(Path(cluster.root) / f"workers{processes}.log", "wb")
    server_before = cpu_seconds(server_pids(cluster))
    started = time.time()
    workers = [subprocess.Popen([str(bin_dir / "dramatiq"), "bench_app", "-p", "1", "-t", str(THREADS)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
               for _ in range(processes)]
    pids, peak = set(), 0
    while True:
        for w in workers:
            pids.update(tree(w.pid))
        peak = max(peak, int(cluster.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'lamplighter%'", db=db) or 0))
        done = int(cluster.scalar("SELECT count(*) FROM lamplighter.job_history", db=db) or 0)
        if done >= jobs:
            break
        if time.time() - started > 600:
            raise RuntimeError(f"drain not done after 600 s ({done} of {jobs})")
        time.sleep(0.1)
    wall = time.time() - started
    # The queues the workers consume: every declared one, the bench's own included (registered at start).
    queues = int(cluster.scalar("SELECT count(DISTINCT queue_name) FROM lamplighter.actors", db=db) or 0)
    worker_cpu = cpu_seconds(pids)
    server_cpu = cpu_seconds(server_pids(cluster)) - server_before
    for w in workers:
        os.killpg(w.pid, signal.SIGTERM)
    for w in workers:
        w.wait(timeout=60)
    log.close()
    from console import formation

    cluster.drop_db(db)
    return {"processes": processes, "threads": THREADS, "jobs": jobs, "wall_s": round(wall, 2),
            "jobs_per_s": round(jobs / wall), "worker_cpu_s": round(worker_cpu, 2),
            "server_cpu_s": round(server_cpu, 2),
            "jobs_per_worker_cpu_s": round(jobs / worker_cpu) if worker_cpu else None,
            "jobs_per_server_cpu_s": round(jobs / server_cpu) if server_cpu else None,
            "peak_connections": peak, "queues": queues,
            "budget": processes * formation.worker_process(THREADS, listen=True)}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--processes", default="1,2,4,8")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    cluster = Cluster("dynos")
    try:
        rows = []
        for n in (int(x) for x in args.processes.split(",")):
            rows.append(drain(cluster, n, args.jobs))
            print(json.dumps(rows[-1]), flush=True)
        result = {"bench": "dynos", "lamplighter_source": source_state(), "machine": {"cpus": os.cpu_count()},
                  "note": "each process is one dyno's worker (-p 1 -t 8); wall includes start-up; the machine "
                          "has 2 cores, so jobs/s cannot scale here: read the CPU cost per job and the connections",
                  "rows": rows, "cluster": cluster.report()}
    finally:
        cluster.stop()
    out = Path(args.out or HERE / "results" / f"{time.strftime('%Y-%m-%d')}_dynos.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
