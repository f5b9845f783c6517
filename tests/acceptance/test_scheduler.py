"""The scheduler as real processes (`python -m console scheduler`) against a test database, with
a 2 s lease and a 1 s poll. Time is moved with LAMPLIGHTER_CLOCK_OFFSET (Python's clock and
lamplighter.now() alike): each test puts "now" a few seconds before a minute boundary, or jumps
a process minutes ahead, instead of waiting for the minutes to pass."""
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from scheduler import sync
from storage.schedules import Definition
from tests.conftest import lamplighter_env, use_database, wait_for

pytestmark = pytest.mark.acceptance

UTC = timezone.utc
LEASE_TTL, POLL = 2.0, 1.0


def definition(key, **changes) -> Definition:
    base = Definition(key=key, actor_name="maintenance.ping", queue_name="maintenance", priority=0, max_attempts=4,
                      concurrency_key=None, concurrency_limit=None, cron="* * * * *", zone="UTC", args=[],
                      kwargs={"note": key}, misfire="run_once", grace_seconds=30.0, overlap="allow")
    return replace(base, **changes)


def offset_to(second_of_minute: float) -> float:
    """A clock offset that makes "now" read ``second_of_minute`` seconds into a minute."""
    return second_of_minute - time.time() % 60


def shifted_now(offset: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=offset)


def next_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


class Schedulers:
    def __init__(self, database_url, tmp_path):
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, offset: float) -> subprocess.Popen:
        env = lamplighter_env(DATABASE_URL=self.database_url, LAMPLIGHTER_CLOCK_OFFSET=f"{offset:.6f}",
                              LAMPLIGHTER_SCHEDULER_LEASE_TTL=str(LEASE_TTL),
                              LAMPLIGHTER_SCHEDULER_POLL_INTERVAL=str(POLL))
        log = open(self.tmp_path / f"{name}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "console", "scheduler"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        log.close()
        self.started[name] = process
        return process

    def events(self, name: str) -> list[dict]:
        lines = (self.tmp_path / f"{name}.log").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def holder(self, name: str) -> str | None:
        started = [e for e in self.events(name) if e["event"] == "scheduler_started"]
        return started[0]["holder"] if started else None

    def stop_all(self):
        for process in self.started.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def schedulers(database_url, tmp_path):
    running = Schedulers(database_url, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def db(sql):
    return sql


def ticks(db, fire_at=None):
    return db("SELECT schedule_key, fire_at, kind, outcome, job_id, missed, recorded_by "
              "FROM lamplighter.schedule_ticks WHERE %(at)s::timestamptz IS NULL OR fire_at = %(at)s "
              "ORDER BY schedule_key, fire_at", {"at": fire_at})


def lease(db):
    found = db("SELECT holder, acquired_at, renewed_at FROM lamplighter.scheduler_lease")
    return found[0] if found else None


def wait_for_polls_after(db, moment_sql: str, polls: int = 2):
    """Until the leader has renewed its lease ``polls`` polls after ``moment_sql`` (database time)."""
    wait_for(lambda: db(f"SELECT renewed_at > ({moment_sql}) + make_interval(secs => %s) "
                        "FROM lamplighter.scheduler_lease", (polls * POLL + 0.1,)) == [(True,)],
             timeout=15, interval=0.1, message="the leader polling again")


def test_two_schedulers_enqueue_each_tick_exactly_once(database_url, schedulers, db):
    offset = offset_to(56)  # the next minute boundary is 4 s away
    use_database(database_url, LAMPLIGHTER_CLOCK_OFFSET=str(offset))
    keys = [f"every-minute-{i}" for i in range(10)] + ["kolkata", "new-york"]
    sync.sync([definition(k) for k in keys[:10]]
              + [definition("kolkata", zone="Asia/Kolkata"), definition("new-york", zone="America/New_York")])
    boundary = next_minute(shifted_now(offset))
    schedulers.start("a", offset)
    schedulers.start("b", offset)

    wait_for(lambda: len(ticks(db, boundary)) == len(keys), timeout=30, interval=0.1,
             message="every schedule's tick at the boundary")
    wait_for_polls_after(db, "SELECT max(recorded_at) FROM lamplighter.schedule_ticks")
    wait_for(lambda: any(e["event"] == "scheduler_standby" for e in schedulers.events("a") + schedulers.events("b")),
             timeout=10, message="one scheduler waiting as standby")

    found = ticks(db)
    assert [(t[0], t[1], t[3]) for t in found] == [(k, boundary, "enqueued") for k in sorted(keys)]
    jobs = db("SELECT message_id, enqueued_by FROM dramatiq.queue ORDER BY enqueued_by")
    assert len(jobs) == len(keys)
    assert sorted(str(t[4]) for t in found) == sorted(str(j[0]) for j in jobs)
    assert sorted(e for _, e in jobs) == sorted(f"cron:{k}@{boundary.isoformat()}" for k in keys)
    # One scheduler led and fired them all; it logged one line per tick with the job id.
    leader = {t[6] for t in found}
    assert len(leader) == 1
    [leader_name] = [n for n in ("a", "b") if schedulers.holder(n) in leader]
    logged = {e["schedule"]: e["job_id"] for e in schedulers.events(leader_name) if e["event"] == "schedule_tick"}
    assert logged == {t[0]: str(t[4]) for t in found}
    assert all(p.poll() is None for p in schedulers.started.values())


def test_leader_killed_standby_takes_over_without_losing_or_doubling_a_tick(database_url, schedulers, db):
    offset = offset_to(53)  # the boundary is 7 s away
    use_database(database_url, LAMPLIGHTER_CLOCK_OFFSET=str(offset))
    keys = [f"every-minute-{i}" for i in range(5)]
    sync.sync([definition(k) for k in keys] + [definition("overdue")])
    boundary = next_minute(shifted_now(offset))
    previous = boundary - timedelta(minutes=1)
    # One schedule is already due (its previous tick, 53 s ago, within its grace): the first
    # leader fires it; the standby must not fire it again.
    db("UPDATE lamplighter.schedules SET next_fire_at = %s, grace_seconds = 120 WHERE key = 'overdue'",
       (previous,))

    a = schedulers.start("a", offset)
    wait_for(lambda: len(ticks(db, previous)) == 1, timeout=20, interval=0.1, message="a leads and fires")
    holder_a = schedulers.holder("a")
    assert lease(db)[0] == holder_a
    schedulers.start("b", offset)
    wait_for(lambda: any(e["event"] == "scheduler_standby" for e in schedulers.events("b")), timeout=20,
             interval=0.1, message="b waiting as standby")
    holder_b = schedulers.holder("b")

    # kill -9 the leader just before the boundary: the tick falls into the leaderless window.
    assert shifted_now(offset) < boundary - timedelta(seconds=0.7), "processes started too slowly for this test"
    wait_for(lambda: shifted_now(offset) >= boundary - timedelta(seconds=0.7), timeout=15, interval=0.02,
             message="just before the boundary")
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    killed_at = shifted_now(offset)

    wait_for(lambda: len(ticks(db, boundary)) == len(keys) + 1, timeout=15 + LEASE_TTL, interval=0.1,
             message="the standby fires the boundary's ticks")
    new_lease = lease(db)
    assert new_lease[0] == holder_b
    # Takeover within the lease TTL plus a poll (and well within the 15 s the issue asks).
    assert (new_lease[1] - killed_at).total_seconds() <= LEASE_TTL + POLL + 1.0
    wait_for_polls_after(db, "SELECT max(recorded_at) FROM lamplighter.schedule_ticks")

    found = ticks(db)
    assert [(t[0], t[1], t[6]) for t in found] == sorted(
        [(k, boundary, holder_b) for k in keys] + [("overdue", previous, holder_a), ("overdue", boundary, holder_b)])
    assert all(t[3] == "enqueued" for t in found)
    jobs = db("SELECT message_id FROM dramatiq.queue")
    assert sorted(str(j[0]) for j in jobs) == sorted(str(t[4]) for t in found)
    assert any(e["event"] == "scheduler_leader" and e["previous_holder"] == holder_a for e in schedulers.events("b"))


def test_scheduler_down_across_three_ticks_one_catch_up_with_run_once_none_with_skip(database_url, schedulers, db):
    offset = offset_to(30)
    use_database(database_url, LAMPLIGHTER_CLOCK_OFFSET=str(offset))
    sync.sync([definition("catch-up", misfire="run_once", grace_seconds=10),
               definition("skipper", misfire="skip", grace_seconds=10)])
    started_minute = shifted_now(offset).replace(second=0, microsecond=0)
    missed = [started_minute + timedelta(minutes=n) for n in (1, 2, 3)]

    # A scheduler runs, then stops (SIGTERM: it gives its lease up) before the next tick ...
    first = schedulers.start("first", offset)
    wait_for(lambda: lease(db) is not None, timeout=20, interval=0.1, message="the first scheduler leads")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    assert lease(db) is None
    assert ticks(db) == []

    # ... and comes back 3 min 10 s later (by its clock): 3 ticks were missed, the last 40 s ago.
    schedulers.start("later", offset + 190)
    wait_for(lambda: db("SELECT count(*) FROM lamplighter.schedules WHERE next_fire_at > %s", (missed[-1],))
             == [(2,)], timeout=20, interval=0.1, message="both schedules handled")

    found = [t for t in ticks(db) if t[1] <= missed[-1]]
    assert [(t[0], t[1], t[2], t[3], t[5]) for t in found] == [
        ("catch-up", missed[-1], "catch_up", "enqueued", 3),  # one run, recorded with the latest missed tick
        ("skipper", missed[-1], "catch_up", "skipped_misfire", 3),  # none
    ]
    jobs = db("SELECT message_id, enqueued_by FROM dramatiq.queue")
    assert [(str(j[0]), j[1]) for j in jobs] == [(str(found[0][4]), f"cron:catch-up@{missed[-1].isoformat()}")]
