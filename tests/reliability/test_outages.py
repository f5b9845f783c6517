"""PostgreSQL goes away under a whole deployment, and comes back (issue #26, "Faults").

Two worker processes draining recording jobs, a scheduler and `lamplighter web` run over a
throwaway cluster (tests/outage_rig.py; never the shared server).

* The cluster stopped for 1 s, then for 10 s: meanwhile GET /api/jobs (a token's) and /readyz
  answer 503 with a JSON reason and a dashboard page the dashboard's error page (503), never a 500
  or a traceback, in the answer or in the web's log; once it is back every process recovers by itself:
  the web answers 200, the scheduler leads again, every job completes, each ran once, never twice
  at once, with one history row per attempt. (60 s: bench/outage.py.)
* pg_terminate_backend of every connection of the web, of the workers and of the scheduler: the
  web's next answers are 200 (no 503: a pool connection found dead is replaced before the
  request runs on it), jobs sent afterwards complete, the next cron tick is enqueued, once.
* A process that only sends jobs: after a restart, one send fails, the next ones work.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import peewee
import pytest

from tests.outage_rig import Rig, outage

pytestmark = pytest.mark.acceptance

JOBS, SECONDS = 40, 0.5  # per batch: 8 threads drain one in about 2.5 s


@pytest.fixture
def rig(cluster, worker_processes, tmp_path):
    started = Rig(cluster, worker_processes, tmp_path)
    yield started
    started.stop()


def _drain_under_way(rig: Rig, prefix: str) -> dict[str, str]:
    sent = rig.send(prefix, JOBS, SECONDS)
    rig.wait(lambda: rig.started(sent) >= 8, 30, f"the {prefix} batch running")
    return sent


def test_postgres_stopped_for_1_s_then_10_s_the_web_answers_503_and_everything_recovers(rig):
    rig.start()
    seen = {}
    for seconds in (1, 10):
        _drain_under_way(rig, f"s{seconds}-")
        seen[seconds] = outage(rig, seconds)
        assert seen[seconds]["problems"] == [], f"{seconds} s stop: {seen[seconds]}\n{rig.describe()}"
        assert {status for _, status in seen[seconds]["statuses_while_down"]} == {503}, seen[seconds]
    rig.settle()
    problems = rig.job_problems() + rig.web_log_problems()
    assert problems == [], f"{seen}\n" + "\n".join(problems) + f"\n{rig.describe()}"
    assert rig.leader(), rig.describe()


def _terminate(rig: Rig, prefix: str) -> int:
    pids = [pid for (pid,) in rig.cluster.sql("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
                                              (prefix + "%",))]
    rig.cluster.sql("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    rig.wait(lambda: not rig.cluster.sql("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)), 10,
             f"the {prefix} connections gone")
    return len(pids)


def test_terminated_connections_of_web_workers_and_scheduler_are_replaced_without_a_503(rig):
    rig.start(seconds_before_tick=8)
    # The scheduler first: the next minute boundary (on its clock) is a few seconds away.
    assert _terminate(rig, "lamplighter-scheduler") >= 1
    terminated_at = datetime.fromtimestamp(rig.scheduler_now(), timezone.utc)
    with ThreadPoolExecutor(6) as spread:  # requests at once: several of the web's pool connections open
        assert {a.status for a in spread.map(lambda _: rig.ask_api(), range(12))} == {200}
    _drain_under_way(rig, "before-")

    web = _terminate(rig, "lamplighter-web")
    assert web >= 2, f"{web} web connections"
    answers = [rig.ask_api() for _ in range(12)] + [rig.ask_dashboard(), rig.ask_readyz()]
    with ThreadPoolExecutor(6) as spread:
        answers += list(spread.map(lambda _: rig.ask_api(), range(12)))
    problems = [p for a in answers if (p := a.problem(down=False))]
    assert problems == [], f"after {web} web connections were terminated:\n" + "\n".join(problems)

    workers = _terminate(rig, "lamplighter-worker")
    assert workers >= 2, f"{workers} worker connections"
    after = rig.send("after-", JOBS, SECONDS)
    rig.wait(lambda: rig.started(after) == JOBS, 60, "every job sent after the terminate started")

    rig.wait(lambda: any(fire_at > terminated_at for fire_at, _ in rig.ticks()), 80,
             "a tick after the scheduler's connection was terminated")
    rig.wait(rig.renewals_after(), 30, "the scheduler leading")
    rig.settle()
    problems = [f"tick {fire_at} enqueued {n} times" for fire_at, n in rig.ticks() if n != 1]
    problems += rig.job_problems() + rig.web_log_problems()
    assert problems == [], "\n".join(problems) + f"\n{rig.describe()}"


def test_an_applications_sends_work_again_after_a_restart(cluster):
    """A process that only sends jobs (an application's `actor.send()`) finds its connection
    closed after a restart: that send fails, the next ones reconnect."""
    import psycopg2
    from actors import maintenance

    maintenance.ping.send(note="before")
    cluster.restart_fast()
    try:
        maintenance.ping.send(note="on the closed connection")
    except (peewee.OperationalError, peewee.InterfaceError, psycopg2.OperationalError, psycopg2.InterfaceError):
        pass  # told to the caller; what matters is that it is the last failure
    sent = [maintenance.ping.send(note=f"after {i}").message_id for i in range(3)]
    assert cluster.sql("SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[])", (sent,)) == [(3,)]
