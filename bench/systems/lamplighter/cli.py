"""Lamplighter adapter.  Reports 'unavailable' (exit 3) instead of crashing when the
product is not there yet.  What it needs from the product:

* package `actors` whose import builds the broker from $DATABASE_URL and calls
  dramatiq.set_broker(...)  (bench_app.py adds its no-op actor to that broker);
* console script `lamplighter migrate` (idempotent schema creation, reads $DATABASE_URL);
* optional `broker.send_many(actor, calls, delay=ms)` (or, older, `broker.enqueue_many(messages,
  delay=ms)`) for the bulk enqueue path; without either bulk falls back to single sends;
* the worker is plain `dramatiq bench_app -p 2 -t 8`;
* workloads 9 and 10: `broker.enqueue_many(messages)`, and the tables `dramatiq.queue` and
  `lamplighter.job_history` for the report (states, attempts, one history row per attempt).
"""
import os
import shutil
import subprocess
import sys

from adapter_cli import Unavailable, main


class Adapter:
    batch_api = False  # set in check() when the broker has enqueue_many

    def check(self):
        try:
            import dramatiq
        except ImportError as e:
            raise Unavailable(f"dramatiq not importable: {e}")
        try:
            import actors  # noqa: F401
        except SystemExit as e:
            raise Unavailable(f"`import actors` exited ({e.code}): product configuration error")
        except Exception as e:  # noqa: BLE001  (ImportError and anything raised at import)
            raise Unavailable(f"`import actors` failed: {type(e).__name__}: {e}")
        broker = dramatiq.get_broker()
        if type(broker).__module__.startswith("dramatiq.brokers"):
            raise Unavailable(f"`import actors` did not set a Lamplighter broker (got {type(broker).__name__})")
        self.batch_api = callable(getattr(broker, "send_many", None)) or callable(getattr(broker, "enqueue_many", None))
        if not self._lamplighter_cmd():
            raise Unavailable("console script `lamplighter` not found in the venv")
        from importlib.metadata import PackageNotFoundError, version
        try:
            v = version("lamplighter")
        except PackageNotFoundError:
            v = "source tree"
        return {"versions": {"lamplighter": v, "dramatiq": dramatiq.__version__},
                "broker": f"{type(broker).__module__}.{type(broker).__name__}"}

    def _lamplighter_cmd(self):
        here = os.path.join(os.path.dirname(sys.executable), "lamplighter")
        return here if os.path.exists(here) else shutil.which("lamplighter")

    def setup(self):
        r = subprocess.run([self._lamplighter_cmd(), "migrate"], capture_output=True, text=True,
                           timeout=300)
        if r.returncode:
            raise RuntimeError(f"lamplighter migrate failed ({r.returncode}): {r.stderr[-2000:]}")

    def _actor(self):
        if not hasattr(self, "noop"):
            import bench_app
            self.noop = bench_app.bench_noop
        return self.noop

    def send(self, job_id, enq_ts, delay_s=None):
        noop = self._actor()
        if delay_s:
            noop.send_with_options(args=(job_id, enq_ts), delay=int(delay_s * 1000))
        else:
            noop.send(job_id, enq_ts)

    def send_timed(self, items):
        """Timed jobs in one statement; the limited ones through an actor limited to 2 at once."""
        import bench_app
        messages = [(bench_app.bench_timed_limited if limited else bench_app.bench_timed).message(job_id, seconds)
                    for job_id, seconds, limited in items]
        bench_app.bench_timed.broker.enqueue_many(messages)

    def send_keyed(self, count, seconds):
        """``count`` jobs behind one concurrency key (bench_keyed: limited to 1), in batches of
        10,000: the first claimed holds the key's only slot for ``seconds``, the rest wait."""
        import bench_app
        keyed = bench_app.bench_keyed
        for first in range(0, count, 10_000):
            keyed.broker.send_many(keyed, [(f"k{i}", seconds) for i in range(first, min(count, first + 10_000))])

    def report(self):
        """The database's view of the jobs: states, and whether every attempt that started has its
        one history row (attempt numbers 1..n, the table allows one row per attempt)."""
        import psycopg2
        conn = psycopg2.connect(os.environ["DATABASE_URL"])
        try:
            cur = conn.cursor()
            cur.execute("SELECT state, count(*) FROM dramatiq.queue GROUP BY state")
            states = dict(cur.fetchall())
            cur.execute("SELECT outcome, count(*) FROM lamplighter.job_history GROUP BY outcome")
            outcomes = dict(cur.fetchall())
            cur.execute("""
                WITH h AS (SELECT job_id, count(*) AS n, max(attempt) AS last FROM lamplighter.job_history
                           GROUP BY job_id)
                SELECT coalesce(sum(q.attempt), 0), coalesce(sum(h.n), 0),
                       count(*) FILTER (WHERE coalesce(h.n, 0) <> q.attempt OR coalesce(h.last, 0) <> q.attempt)
                FROM dramatiq.queue q LEFT JOIN h ON h.job_id = q.message_id""")
            attempts, rows, unrecorded = cur.fetchone()
        finally:
            conn.close()
        return {"states": states, "dead": states.get("dead", 0), "history_outcomes": outcomes,
                "attempts": int(attempts), "history_rows": int(rows),
                "jobs_with_an_attempt_without_history": int(unrecorded)}

    def send_bulk(self, items, delay_s=None):
        noop = self._actor()
        delay = int(delay_s * 1000) if delay_s else None
        if hasattr(noop.broker, "send_many"):  # the product's bulk API: calls, not Message objects
            noop.broker.send_many(noop, [(j, t) for j, t in items], delay=delay)
        else:
            noop.broker.enqueue_many([noop.message(j, t) for j, t in items], delay=delay)


main(Adapter)
