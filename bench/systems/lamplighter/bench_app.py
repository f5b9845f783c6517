"""Worker module for `dramatiq bench_app -p 2 -t 8`.

`import actors` builds the LamplighterBroker from DATABASE_URL, sets it as dramatiq's
global broker and registers the product's actors; the bench's no-op actor is added
on the same broker, on its own queue.
"""
import dramatiq

# Lamplighter runs at its shipped defaults (log level INFO: one JSON line per finished job); the
# lamplighter_warning system is the same app with LAMPLIGHTER_LOG_LEVEL=WARNING.
import actors  # noqa: F401  (side effect: dramatiq.set_broker(LamplighterBroker))
from benchjob import record


@dramatiq.actor(queue_name="bench")
def bench_noop(job_id, enq_ts):
    record(job_id, enq_ts)
