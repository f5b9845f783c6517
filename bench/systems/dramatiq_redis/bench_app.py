import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchjob import record

broker = RedisBroker(url=os.environ["REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop(job_id, enq_ts):
    record(job_id, enq_ts)
