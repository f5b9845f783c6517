import os
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from benchjob import record


@asynccontextmanager
async def main():
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        jid, ts = job.payload.split()
        record(int(jid), float(ts))

    try:
        yield pgq
    finally:
        await conn.close()
