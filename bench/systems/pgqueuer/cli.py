import os
from datetime import timedelta

from adapter_cli import Unavailable, main


class Adapter:
    batch_api = True  # Queries.enqueue with lists

    async def check(self):
        try:
            import asyncpg
            import pgqueuer  # noqa: F401
        except ImportError as e:
            raise Unavailable(f"import failed: {e}")
        from importlib.metadata import version
        return {"versions": {"pgqueuer": version("pgqueuer"), "asyncpg": asyncpg.__version__,
                             "typer": version("typer")}}

    async def _q(self):
        if not hasattr(self, "q"):
            import asyncpg
            from pgqueuer.db import AsyncpgDriver
            from pgqueuer.queries import Queries
            self.conn = await asyncpg.connect(os.environ["DATABASE_URL"])
            self.q = Queries(AsyncpgDriver(self.conn))
        return self.q

    async def setup(self):
        q = await self._q()
        await q.install()

    async def send(self, job_id, enq_ts, delay_s=None):
        q = await self._q()
        await q.enqueue("noop", b"%d %.6f" % (job_id, enq_ts), 0,
                        timedelta(seconds=delay_s) if delay_s else None)

    async def send_bulk(self, items, delay_s=None):
        q = await self._q()
        n = len(items)
        await q.enqueue(["noop"] * n, [b"%d %.6f" % (j, t) for j, t in items], [0] * n,
                        [timedelta(seconds=delay_s)] * n if delay_s else None)

    async def close(self):
        if hasattr(self, "conn"):
            await self.conn.close()


main(Adapter)
