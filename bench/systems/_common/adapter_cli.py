"""Command line every system adapter exposes (runs inside the system's venv).

A system directory ``bench/systems/<name>/`` holds:

* ``system.json``   how to build its venv and start its workers (read by run.py)
* ``requirements.txt`` pins for its venv
* ``bench_app.py``  the worker-side module: the system's app / broker and the
                    no-op job, which calls ``benchjob.record(job_id, enq_ts)``
* ``cli.py``        defines ``Adapter`` and ends with ``main(Adapter)``

``Adapter`` methods (each may be ``async def``; the runner adapts):

* ``check() -> dict``       import everything, return versions; raise
                            ``Unavailable("why")`` if the system cannot run
* ``setup()``               create the system's schema in $DATABASE_URL
* ``send(job_id, enq_ts, delay_s=None)``           enqueue one job
* ``send_bulk(items, delay_s=None)``  items = [(job_id, enq_ts), ...]; only if
                            the system has a batch API (set ``batch_api = True``)
* ``close()``               optional
* ``send_timed(items)``     optional (workloads 9 and 10): items = [(job_id,
                            seconds, limited), ...], all in one batch; each job
                            calls ``benchjob.record_run(job_id, seconds)``, and
                            ``limited`` ones run at most 2 at once
* ``report()``              optional: the system's own view of the jobs (states,
                            attempts and their history rows) as a dict
* ``send_keyed(count, seconds)``  optional (workload 11): ``count`` jobs of one
                            actor limited to 1 at once (one concurrency key),
                            each ``record_run(job_id, seconds)``

Sub-commands: ``check``, ``setup``, ``enqueue --first N --count M --mode
single|bulk [--batch B] [--delay S] [--rate R]``, ``enqueue-timed --spec FILE``
(a JSON list of items), ``enqueue-keyed --count N --seconds S``, ``report``.  Each prints one JSON object as its last
stdout line.  Exit code 3 = unavailable.
"""
import argparse
import asyncio
import inspect
import json
import sys
import time
import traceback


class Unavailable(Exception):
    pass


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _maybe(v):
    if inspect.isawaitable(v):
        return await v
    return v


async def _enqueue(ad, a):
    delay = a.delay if a.delay and a.delay > 0 else None
    ids = range(a.first, a.first + a.count)
    t0 = time.perf_counter()
    if a.mode == "bulk" and getattr(ad, "batch_api", False):
        for i in range(0, a.count, a.batch):
            chunk = ids[i:i + a.batch]
            now = time.time()
            await _maybe(ad.send_bulk([(j, now) for j in chunk], delay_s=delay))
    elif a.rate:
        period = 1.0 / a.rate
        start = time.perf_counter()
        for n, j in enumerate(ids):
            target = start + n * period
            wait = target - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await _maybe(ad.send(j, time.time(), delay_s=delay))
    else:
        for j in ids:
            await _maybe(ad.send(j, time.time(), delay_s=delay))
    secs = time.perf_counter() - t0
    used_bulk = a.mode == "bulk" and getattr(ad, "batch_api", False)
    return {"count": a.count, "seconds": secs, "jobs_per_s": a.count / secs if secs else None,
            "mode": "bulk" if used_bulk else "single", "batch": a.batch if used_bulk else 1}


async def _amain(Adapter, a):
    ad = Adapter()
    try:
        if a.cmd == "check":
            info = await _maybe(ad.check())
            info["batch_api"] = bool(getattr(ad, "batch_api", False))
            info["timed_jobs"] = callable(getattr(ad, "send_timed", None))
            info["job_report"] = callable(getattr(ad, "report", None))
            info["keyed_backlog"] = callable(getattr(ad, "send_keyed", None))
            return {"ok": True, **info}
        await _maybe(ad.check())
        if a.cmd == "setup":
            await _maybe(ad.setup())
            return {"ok": True}
        if a.cmd == "enqueue":
            return {"ok": True, **(await _enqueue(ad, a))}
        if a.cmd == "enqueue-timed":
            items = [tuple(item) for item in json.load(open(a.spec))]
            sent_at = time.time()
            await _maybe(ad.send_timed(items))
            return {"ok": True, "count": len(items), "sent_at": sent_at, "seconds": time.time() - sent_at}
        if a.cmd == "enqueue-keyed":
            t0 = time.perf_counter()
            await _maybe(ad.send_keyed(a.count, a.seconds))
            return {"ok": True, "count": a.count, "seconds": time.perf_counter() - t0}
        if a.cmd == "report":
            return {"ok": True, **(await _maybe(ad.report()))}
    finally:
        close = getattr(ad, "close", None)
        if close:
            await _maybe(close())


def main(Adapter):
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["check", "setup", "enqueue", "enqueue-timed", "enqueue-keyed", "report"])
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--mode", choices=["single", "bulk"], default="single")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=0.0, help="enqueue-keyed: each job's length")
    p.add_argument("--spec", default=None, help="enqueue-timed: JSON file of [job_id, seconds, limited] items")
    a = p.parse_args()
    try:
        res = asyncio.run(_amain(Adapter, a))
    except Unavailable as e:
        _emit({"ok": False, "unavailable": str(e)})
        sys.exit(3)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        _emit({"ok": False, "error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
    _emit(res)
