"""Worker module for `dramatiq bench_app -p 2 -t 8`.

`import actors` builds the LamplighterBroker from DATABASE_URL, sets it as dramatiq's
global broker and registers the product's actors; the bench's actors are added on the same
broker, on their own queue: the no-op job, the timed jobs of workloads 9 and 10 (one of
them limited to 2 at once across every process), and workload 11's jobs behind one
concurrency key (limited to 1).
"""
import dramatiq

# Lamplighter runs at its shipped defaults (log level INFO: one JSON line per finished job); the
# lamplighter_warning system is the same app with LAMPLIGHTER_LOG_LEVEL=WARNING.
import actors  # noqa: F401  (side effect: dramatiq.set_broker(LamplighterBroker))
from benchjob import record, record_run


@dramatiq.actor(queue_name="bench")
def bench_noop(job_id, enq_ts):
    record(job_id, enq_ts)


@dramatiq.actor(queue_name="bench", max_retries=3, time_limit=600_000)
def bench_timed(job_id, seconds):
    record_run(job_id, seconds)


@dramatiq.actor(queue_name="bench", max_retries=3, time_limit=600_000, concurrency_limit=2)
def bench_timed_limited(job_id, seconds):
    record_run(job_id, seconds)


@dramatiq.actor(queue_name="bench", max_retries=0, time_limit=3_600_000, concurrency_limit=1)
def bench_keyed(job_id, seconds):
    record_run(job_id, seconds)
