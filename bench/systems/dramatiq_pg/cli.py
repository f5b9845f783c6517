import os

from adapter_cli import Unavailable, main


class Adapter:
    batch_api = False  # dramatiq has no batch enqueue; group() sends one by one

    def check(self):
        try:
            import dramatiq
            import dramatiq_pg
            import psycopg2
        except ImportError as e:
            raise Unavailable(f"import failed: {e}")
        from importlib.metadata import version
        return {"versions": {"dramatiq": dramatiq.__version__, "dramatiq-pg": version("dramatiq-pg"),
                             "psycopg2": psycopg2.__version__.split()[0]}}

    def setup(self):
        import psycopg2
        from dramatiq_pg.schema import generate_init_sql
        conn = psycopg2.connect(os.environ["DATABASE_URL"])
        with conn, conn.cursor() as cur:
            cur.execute(generate_init_sql())
        conn.close()

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
