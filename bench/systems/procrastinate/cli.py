from adapter_cli import Unavailable, main


class Adapter:
    batch_api = True  # Task.batch_defer_async

    async def check(self):
        try:
            import procrastinate
            import psycopg
        except ImportError as e:
            raise Unavailable(f"import failed: {e}")
        from importlib.metadata import version
        return {"versions": {"procrastinate": version("procrastinate"), "psycopg": psycopg.__version__}}

    async def _app(self):
        if not hasattr(self, "app"):
            import bench_app
            self.app = bench_app.app
            self.noop = bench_app.noop
            await self.app.open_async()
        return self.app

    async def setup(self):
        app = await self._app()
        await app.schema_manager.apply_schema_async()

    async def send(self, job_id, enq_ts, delay_s=None):
        await self._app()
        if delay_s:
            await self.noop.configure(schedule_in={"seconds": delay_s}).defer_async(job_id=job_id, enq_ts=enq_ts)
        else:
            await self.noop.defer_async(job_id=job_id, enq_ts=enq_ts)

    async def send_bulk(self, items, delay_s=None):
        await self._app()
        kw = [{"job_id": j, "enq_ts": t} for j, t in items]
        d = self.noop.configure(schedule_in={"seconds": delay_s}) if delay_s else self.noop.configure()
        await d.batch_defer_async(*kw)

    async def close(self):
        if hasattr(self, "app"):
            await self.app.close_async()


main(Adapter)
