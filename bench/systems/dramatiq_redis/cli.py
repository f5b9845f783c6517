import os

from adapter_cli import Unavailable, main


class Adapter:
    batch_api = False  # dramatiq has no batch enqueue; group() sends one by one

    def check(self):
        try:
            import dramatiq
            import redis
        except ImportError as e:
            raise Unavailable(f"import failed: {e}")
        try:
            redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
        except Exception as e:  # noqa: BLE001
            raise Unavailable(f"redis not reachable: {e}")
        return {"versions": {"dramatiq": dramatiq.__version__, "redis-py": redis.__version__}}

    def setup(self):
        pass  # the orchestrator FLUSHDBs the dedicated logical db before each run

    def _app(self):
        if not hasattr(self, "noop"):
            import bench_app
            self.noop = bench_app.noop
        return self.noop

    def send(self, job_id, enq_ts, delay_s=None):
        noop = self._app()
        if delay_s:
            noop.send_with_options(args=(job_id, enq_ts), delay=int(delay_s * 1000))
        else:
            noop.send(job_id, enq_ts)


main(Adapter)
