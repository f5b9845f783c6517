import logging
import os

import dramatiq
from dramatiq_pg import PostgresBroker

from benchjob import record

# dramatiq-pg logs every consumed message at INFO (dramatiq's CLI default level); the other
# systems run with per-job logging off, so this one does too.
logging.getLogger("dramatiq_pg").setLevel(logging.WARNING)

broker = PostgresBroker(url=os.environ["DATABASE_URL"], results=False)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop(job_id, enq_ts):
    record(job_id, enq_ts)
