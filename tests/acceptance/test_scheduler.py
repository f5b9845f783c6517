"""The scheduler as real processes (`python -m console scheduler`) against a test database, with
a 2 s lease and a 1 s poll. Time is moved with LAMPLIGHTER_CLOCK_OFFSET (Python's clock and
lamplighter.now() alike): each test puts "now" a few seconds before a minute boundary, or jumps
a process minutes ahead, instead of waiting for the minutes to pass."""
import signal
from dataclasses import replace
from datetime import timedelta

import pytest

from scheduler import sync
from tests.conftest import use_database, wait_for
from tests.scheduler_processes import (LEASE_TTL, POLL, db, definition, lease, next_minute,  # noqa: F401 (fixtures)
                                       offset_to, schedulers, shifted_now, ticks, wait_for_polls_after)

pytestmark = pytest.mark.acceptance


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
