import os

from adapter_cli import Unavailable, main


class Adapter:
    batch_api = True  # Oban.enqueue_many

    async def check(self):
        try:
            import oban  # noqa: F401
            import psycopg
        except ImportError as e:
            raise Unavailable(f"import failed: {e}")
        from importlib.metadata import version
        return {"versions": {"oban": version("oban"), "psycopg": psycopg.__version__}}

    async def _oban(self):
        if not hasattr(self, "oban"):
            from oban import Oban
            import bench_app
            self.pool = await Oban.create_pool(os.environ["DATABASE_URL"])
            self.oban = Oban(pool=self.pool, queues={})  # client only: no producers
            self.Noop = bench_app.Noop
        return self.oban

    async def setup(self):
        from oban.schema import install
        await self._oban()
        await install(self.pool)

    async def send(self, job_id, enq_ts, delay_s=None):
        await self._oban()
        kw = {"schedule_in": delay_s} if delay_s else {}
        await self.Noop.enqueue({"job_id": job_id, "enq_ts": enq_ts}, **kw)

    async def send_bulk(self, items, delay_s=None):
        ob = await self._oban()
        kw = {"schedule_in": delay_s} if delay_s else {}
        await ob.enqueue_many([self.Noop.new({"job_id": j, "enq_ts": t}, **kw) for j, t in items])

    async def close(self):
        if hasattr(self, "pool"):
            await self.pool.close()


main(Adapter)
