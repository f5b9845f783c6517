"""The Procfile's processes as verbs: `up`, `migrate` (the release step), `worker`, `scheduler`,
`web`. console/processes.py runs them; this module only parses and reports."""
from __future__ import annotations

from contextlib import contextmanager

from console import cli


def register(verbs) -> None:
    verbs.add_parser("up", help="run release, worker, scheduler and web together (embedded PostgreSQL "
                                "when DATABASE_URL is unset)").set_defaults(run=cmd_up)
    verbs.add_parser("migrate", help="apply schema migrations (the release step; safe to re-run)"
                     ).set_defaults(run=cmd_migrate)
    w = verbs.add_parser("worker", help="run worker processes (dramatiq over the actors package)")
    w.add_argument("--processes", "-p", type=cli.positive_int, help="worker processes (LAMPLIGHTER_WORKER_PROCESSES)")
    w.add_argument("--threads", "-t", type=cli.positive_int, help="threads per process (LAMPLIGHTER_WORKER_THREADS)")
    w.add_argument("--queues", "-Q", nargs="+", type=cli.queue_name, help="queues to consume (default: all)")
    w.set_defaults(run=cmd_worker)
    verbs.add_parser("scheduler", help="run the cron scheduler (one leader, standbys wait)"
                     ).set_defaults(run=cmd_scheduler)
    web = verbs.add_parser("web", help="run the web process (health, console, metrics) on $PORT")
    web.add_argument("--port", type=cli.port, help="port (PORT)")
    web.set_defaults(run=cmd_web)


@contextmanager
def _declarations_checked():
    """A bad schedule declaration stops the release step (console/processes.py) as a usage
    error: the code needs fixing, not the database."""
    from storage.schedules import DeclarationError

    try:
        yield
    except DeclarationError as exc:
        raise cli.UsageError(f"bad schedule declaration: {exc}") from None


def cmd_migrate(args, settings) -> int:
    import dataclasses

    from console import processes
    from storage import connection
    from storage import settings as settings_module

    connection.set_process_kind("release")
    if settings.direct_database_url:  # the release step's session lock must not go through a pooler
        settings_module.configure(dataclasses.replace(settings, database_url=settings.direct_database_url))
        connection.reset()

    with _declarations_checked():
        applied, report = processes.release()
    print(f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else " (schema is current)"))
    print(report.summary())
    return 0


def cmd_worker(args, settings) -> int:
    from console import processes
    from storage import connection

    connection.set_process_kind("worker")  # dramatiq's processes say so themselves (engine/lifecycle.py)

    return processes.run_worker(settings, processes_=args.processes, threads=args.threads, queues=args.queues)


def cmd_scheduler(args, settings) -> int:
    from scheduler import service

    return service.run(settings)


def cmd_web(args, settings) -> int:
    from console import web

    return web.serve(settings, port=args.port)


def cmd_up(args, settings) -> int:
    from console import processes
    from storage import connection

    connection.set_process_kind("release")  # up itself runs the release step; its children say what they are

    with _declarations_checked():
        return processes.up(settings)
