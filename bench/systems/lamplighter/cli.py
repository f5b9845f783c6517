"""Lamplighter adapter.  Reports 'unavailable' (exit 3) instead of crashing when the
product is not there yet.  What it needs from the product:

* package `actors` whose import builds the broker from $DATABASE_URL and calls
  dramatiq.set_broker(...)  (bench_app.py adds its no-op actor to that broker);
* console script `lamplighter migrate` (idempotent schema creation, reads $DATABASE_URL);
* optional `broker.send_many(actor, calls, delay=ms)` (or, older, `broker.enqueue_many(messages,
  delay=ms)`) for the bulk enqueue path; without either bulk falls back to single sends;
* the worker is plain `dramatiq bench_app -p 2 -t 8`.
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

    def send_bulk(self, items, delay_s=None):
        noop = self._actor()
        delay = int(delay_s * 1000) if delay_s else None
        if hasattr(noop.broker, "send_many"):  # the product's bulk API: calls, not Message objects
            noop.broker.send_many(noop, [(j, t) for j, t in items], delay=delay)
        else:
            noop.broker.enqueue_many([noop.message(j, t) for j, t in items], delay=delay)


main(Adapter)
