"""Shared by every system's job code (runs inside each system's own venv).

How completions are observed (identical for every system): the no-op job calls
``record(job_id, enq_ts)`` as its first and only action.  ``record`` appends one
line ``"<job_id> <enqueued_at> <started_at>\\n"`` to a per-process file
``$BENCH_DONE_DIR/done-<pid>.log`` with a single O_APPEND ``write(2)``.  That is
one syscall, no database round trip, so it neither loads the system's database
nor favours a system that shares it.  The kernel keeps the line even if the
process is SIGKILLed right after, so workload 6 counts duplicates correctly
(a job that recorded its line but was killed before its ack and then ran again
shows up twice).  The orchestrator tails these files.
"""
import os
import threading
import time

_lock = threading.Lock()
_fd = None
_fd_pid = None


def _get_fd():
    global _fd, _fd_pid
    pid = os.getpid()
    if _fd is None or _fd_pid != pid:  # (re)open after fork
        with _lock:
            if _fd is None or _fd_pid != pid:
                d = os.environ["BENCH_DONE_DIR"]
                _fd = os.open(os.path.join(d, f"done-{pid}.log"),
                              os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                _fd_pid = pid
    return _fd


def record(job_id, enq_ts):
    started = time.time()
    os.write(_get_fd(), b"%d %.6f %.6f\n" % (int(job_id), float(enq_ts), started))


def record_run(job_id, seconds):
    """A job of ``seconds`` (wall time, in small steps) whose every execution is seen: one line
    ``"<job_id> start <pid> <time>"`` when it starts and, however it ends,
    ``"<job_id> end <pid> <time> <how>"`` (``ok`` or the exception's class), appended to the one
    file ``$BENCH_DONE_DIR/runs.log`` with one O_APPEND write(2) each, by every process. The same
    format as the repository's test actors (tests/worker_app.py), so the same rules judge both:
    tests/executions.py (a job run twice at once, a concurrency limit broken)."""
    pid = os.getpid()
    path = os.path.join(os.environ["BENCH_DONE_DIR"], "runs.log")

    def line(text):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    line(f"{job_id} start {pid} {time.time():.6f}\n")
    how = "ok"
    try:
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            time.sleep(0.02)
    except BaseException as exc:
        how = type(exc).__name__
        raise
    finally:
        line(f"{job_id} end {pid} {time.time():.6f} {how}\n")
