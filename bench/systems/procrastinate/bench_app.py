import os

import procrastinate

from benchjob import record

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["DATABASE_URL"]))


@app.task(name="noop", queue="bench")
async def noop(job_id, enq_ts):
    record(job_id, enq_ts)


# Documented recipe ("Retry stalled jobs"): without it, jobs of a killed worker
# stay in 'doing' forever.
@app.periodic(cron="* * * * * */5")
@app.task(name="retry_stalled", queue="maintenance", queueing_lock="retry_stalled", pass_context=True)
async def retry_stalled(context, timestamp):
    for job in await app.job_manager.get_stalled_jobs():
        await app.job_manager.retry_job(job)
