"""Scheduler processes for tests (`python -m console scheduler`) with a 2 s lease and a 1 s poll,
and what tests read of them: events, the lease, the tick rows. Time is moved with
LAMPLIGHTER_CLOCK_OFFSET (Python's clock and lamplighter.now() alike)."""
import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from storage.schedules import Definition
from tests.conftest import lamplighter_env, wait_for

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

    def start(self, name: str, offset: float | None) -> subprocess.Popen:
        """A scheduler process with its own clock offset, or (None) on the database's default."""
        env = lamplighter_env(DATABASE_URL=self.database_url, LAMPLIGHTER_SCHEDULER_LEASE_TTL=str(LEASE_TTL),
                              LAMPLIGHTER_SCHEDULER_POLL_INTERVAL=str(POLL))
        if offset is None:
            env.pop("LAMPLIGHTER_CLOCK_OFFSET", None)
        else:
            env["LAMPLIGHTER_CLOCK_OFFSET"] = f"{offset:.6f}"
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
