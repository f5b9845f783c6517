from oban import worker

from benchjob import record


@worker(queue="bench")  # default max_attempts (20): a lifeline rescue counts as an attempt
class Noop:
    async def process(self, job):
        record(job.args["job_id"], job.args["enq_ts"])
