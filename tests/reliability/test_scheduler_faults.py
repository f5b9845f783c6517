"""Scheduler faults (issue #26) with real `lamplighter scheduler` processes and a real PostgreSQL:
three schedulers started at the same instant, the leader killed with SIGKILL, and two
schedulers whose clocks disagree -- each tick (schedule, fire time) enqueued exactly once.

Cron has minute resolution, so time is moved instead of waited for. A scheduler reads every
"now" from the database (``lamplighter.now()``: transaction time + the session's
``lamplighter.clock_offset``). A process started with ``LAMPLIGHTER_CLOCK_OFFSET`` SETs its offset
when it connects; one started without it takes the database's default, which these tests change
with ``ALTER DATABASE ... SET`` and then apply at runtime by terminating the schedulers'
connections (each process reconnects by itself). That is how a clock "jumps" here: the offset
setting itself is read once at start, by design (a test knob; production has one clock, the
database's)."""
import signal
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from scheduler import sync
from tests.conftest import use_database, wait_for
# db, a fixture: the test's own connection, opened before any ALTER DATABASE, so its clock is the real one.
from tests.scheduler_processes import (LEASE_TTL, POLL, Schedulers, db, definition, lease,  # noqa: F401
                                       next_minute, offset_to, shifted_now, ticks, wait_for_polls_after)

pytestmark = pytest.mark.acceptance

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


class Processes(Schedulers):
    """Schedulers whose clock is the database's default offset unless given their own."""

    def start_at_once(self, names: list[str]) -> None:
        """Start every process at the same instant (a barrier in front of each Popen)."""
        barrier = threading.Barrier(len(names))

        def go(name):
            barrier.wait(timeout=10)
            self.start(name, None)

        threads = [threading.Thread(target=go, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(self.started) == sorted(names)

    def holders(self) -> dict[str, str]:
        wait_for(lambda: all(self.holder(n) for n in self.started), timeout=20, interval=0.1,
                 message="every scheduler started")
        return {self.holder(n): n for n in self.started}

    def believers(self) -> set[str]:
        """Names of the processes whose last word on leadership is that they lead."""
        leading = set()
        for name in self.started:
            said = [e["event"] for e in self.events(name)
                    if e["event"] in ("scheduler_leader", "scheduler_leadership_lost")]
            if said and said[-1] == "scheduler_leader" and self.started[name].poll() is None:
                leading.add(name)
        return leading


@pytest.fixture
def procs(database_url, tmp_path):
    running = Processes(database_url, tmp_path)
    yield running
    running.stop_all()


def offset_for(moment: datetime) -> float:
    """The clock offset that makes "now" read ``moment``."""
    return (moment - datetime.now(UTC)).total_seconds()


def set_database_clock(db, offset: float, *, apply: bool = True) -> None:
    """The database's default clock offset; ``apply``: the schedulers' sessions reconnect to it."""
    [(name,)] = db("SELECT current_database()")
    db(f"ALTER DATABASE \"{name}\" SET lamplighter.clock_offset = '{offset!r}'")
    if apply:
        db("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
           "AND application_name LIKE 'lamplighter-scheduler%'")


def jobs_by_provenance(db) -> dict[str, int]:
    return dict(db("SELECT enqueued_by, count(*) FROM dramatiq.queue GROUP BY enqueued_by"))


def assert_each_tick_once(db, found) -> None:
    """One job per enqueued tick, its enqueued_by naming that tick; no job without a tick."""
    enqueued = [t for t in found if t[3] == "enqueued"]
    assert jobs_by_provenance(db) == {f"cron:{t[0]}@{t[1].astimezone(UTC).isoformat()}": 1 for t in enqueued}
    jobs = db("SELECT message_id FROM dramatiq.queue")
    assert sorted(str(j[0]) for j in jobs) == sorted(str(t[4]) for t in enqueued)


def wait_for_one_leader(db, procs, holders: dict[str, str]) -> str:
    """Until exactly one live process says it leads, and it holds the lease; its name."""
    def settled():
        current = lease(db)
        believers = procs.believers()
        return current is not None and believers == {holders.get(current[0])} and believers
    [name] = wait_for(settled, timeout=15, interval=0.1, message="exactly one process leading")
    return name


def berlin_daily(key: str, moment: datetime, **changes):
    """A daily schedule at ``moment``'s wall-clock time in Berlin."""
    local = moment.astimezone(BERLIN)
    return definition(key, cron=f"{local.minute} {local.hour} * * *", zone="Europe/Berlin", **changes)


def test_three_schedulers_started_at_once_fire_each_tick_once_with_one_leader(database_url, procs, db):
    base = offset_to(20)
    use_database(database_url, LAMPLIGHTER_CLOCK_OFFSET=repr(base))
    first = next_minute(shifted_now(base))
    boundaries = [first + timedelta(minutes=n) for n in range(3)]
    minutely = [f"minutely-{i}" for i in range(4)] + ["berlin-minutely"]
    sync.sync([definition(k) for k in minutely[:4]] + [definition("berlin-minutely", zone="Europe/Berlin"),
                                                       berlin_daily("berlin-daily", boundaries[1])])
    set_database_clock(db, offset_for(boundaries[0]) + 0.2, apply=False)  # the first tick is due at once
    procs.start_at_once(["a", "b", "c"])
    holders = procs.holders()

    leaders = []
    for n, at in enumerate(boundaries):
        if n:  # the clock jumps a minute on: the lease has expired for all three, who race again
            set_database_clock(db, offset_for(at) + 0.2)
        expected = len(minutely) + (1 if n == 1 else 0)
        wait_for(lambda: len(ticks(db, at)) == expected, timeout=20, interval=0.1, message=f"tick {n}")
        wait_for_polls_after(db, "SELECT max(recorded_at) FROM lamplighter.schedule_ticks")
        leaders.append(wait_for_one_leader(db, procs, holders))
        # One leader fired the whole tick.
        assert len({t[6] for t in ticks(db, at)}) == 1

    found = ticks(db)
    assert [(t[0], t[1], t[2], t[3]) for t in found] == sorted(
        [(k, at, "scheduled", "enqueued") for k in minutely for at in boundaries]
        + [("berlin-daily", boundaries[1], "scheduled", "enqueued")])
    assert_each_tick_once(db, found)
    daily = boundaries[1].astimezone(BERLIN)
    assert [t[1].astimezone(BERLIN).strftime("%H:%M") for t in found if t[0] == "berlin-daily"] == [
        daily.strftime("%H:%M")]
    assert all(p.poll() is None for p in procs.started.values())
    # Only the lease holder ever logged a tick of a given fire time.
    for at in boundaries:
        loggers = {n for n in procs.started for e in procs.events(n)
                   if e["event"] == "schedule_tick" and e["fire_at"] == at.isoformat()}
        assert len(loggers) == 1


def test_leader_killed_takeover_within_the_lease_and_the_gap_follows_the_misfire_policy(database_url, procs, db):
    base = offset_to(20)
    use_database(database_url, LAMPLIGHTER_CLOCK_OFFSET=repr(base))
    boundary = next_minute(shifted_now(base))
    sync.sync([definition("on-time", grace_seconds=30), definition("catch-up", grace_seconds=30),
               definition("skipper", misfire="skip", grace_seconds=30)])
    set_database_clock(db, offset_for(boundary) - 40, apply=False)
    procs.start_at_once(["a", "b", "c"])
    holders = procs.holders()
    wait_for_one_leader(db, procs, holders)
    wait_for(lambda: sum(any(e["event"] == "scheduler_standby" for e in procs.events(n)) for n in procs.started) == 2,
             timeout=10, interval=0.1, message="two standbys")
    clock = offset_for(boundary) - 8  # all three up: the clock jumps to 8 s before the boundary
    set_database_clock(db, clock)
    wait_for(lambda: lease(db) and lease(db)[2] > boundary - timedelta(seconds=8), timeout=10, interval=0.05,
             message="a leader on the new clock")
    first = wait_for_one_leader(db, procs, holders)

    # 1. kill -9 the leader just before the boundary: the tick falls into the leaderless window.
    assert shifted_now(clock) < boundary - timedelta(seconds=0.7), "processes started too slowly for this test"
    wait_for(lambda: shifted_now(clock) >= boundary - timedelta(seconds=0.7), timeout=15, interval=0.02,
             message="just before the boundary")
    procs.started[first].send_signal(signal.SIGKILL)
    procs.started[first].wait(timeout=10)
    killed_at = shifted_now(clock)
    wait_for(lambda: len(ticks(db, boundary)) == 3, timeout=15, interval=0.1, message="the boundary's ticks")
    taken = lease(db)
    second = holders[taken[0]]
    assert second != first
    assert (taken[1] - killed_at).total_seconds() <= LEASE_TTL + POLL + 1.0  # TTL + one poll (+ slack)
    assert {(t[2], t[3], t[6]) for t in ticks(db, boundary)} == {("scheduled", "enqueued", taken[0])}

    # 2. The new leader is killed too, and nobody leads for two and a half minutes (the clock
    # jumps): two fire times pass, the latest 30 s ago. Grace 10 s: a misfire.
    db("UPDATE lamplighter.schedules SET grace_seconds = CASE key WHEN 'on-time' THEN 120 ELSE 10 END")
    procs.started[second].send_signal(signal.SIGKILL)
    procs.started[second].wait(timeout=10)
    missed = [boundary + timedelta(minutes=1), boundary + timedelta(minutes=2)]
    set_database_clock(db, offset_for(missed[-1]) + 30)
    wait_for(lambda: db("SELECT count(*) FROM lamplighter.schedules WHERE next_fire_at > %s", (missed[-1],))
             == [(3,)], timeout=20, interval=0.1, message="the last scheduler handles the gap")
    wait_for_polls_after(db, "SELECT max(recorded_at) FROM lamplighter.schedule_ticks")
    [third] = set(procs.started) - {first, second}
    assert wait_for_one_leader(db, procs, holders) == third

    found = ticks(db)
    assert [(t[0], t[1], t[2], t[3], t[5]) for t in found if t[1] > boundary] == [
        ("catch-up", missed[-1], "catch_up", "enqueued", 2),  # run_once: one run for the gap
        ("on-time", missed[-1], "scheduled", "enqueued", 2),  # within its grace: fires as itself
        ("skipper", missed[-1], "catch_up", "skipped_misfire", 2),  # skip: none, recorded
    ]
    assert len(found) == 6  # nothing else, nothing twice
    assert_each_tick_once(db, found)
    assert any(e["event"] == "scheduler_leader" and e["previous_holder"] == taken[0] for e in procs.events(third))


def test_two_schedulers_with_disagreeing_clocks_fire_each_tick_once_in_its_zone(database_url, procs, db):
    a_clock = offset_to(55)  # a's own clock, SET by a at connect; b takes the database's default
    use_database(database_url, LAMPLIGHTER_CLOCK_OFFSET=repr(a_clock))
    t1 = next_minute(shifted_now(a_clock))
    t2 = t1 + timedelta(minutes=1)
    decoy = t2.replace(tzinfo=None).replace(tzinfo=BERLIN)  # t2's UTC wall time read in Berlin: an hour off
    sync.sync([definition("berlin-minutely", zone="Europe/Berlin", grace_seconds=120),
               berlin_daily("berlin-daily", t2, grace_seconds=120),
               definition("berlin-decoy", cron=f"{decoy.minute} {decoy.hour} * * *", zone="Europe/Berlin",
                          grace_seconds=120)])
    set_database_clock(db, a_clock + 30, apply=False)  # b runs 30 s ahead of a
    a = procs.start("a", a_clock)
    procs.start("b", None)
    holders = procs.holders()
    names = {v: k for k, v in holders.items()}

    # 1. Both run; b, ahead, takes the lease from a (a's lease has expired by b's clock).
    wait_for(lambda: len(ticks(db, t1)) == 1, timeout=20, interval=0.1, message="t1 fired")
    assert wait_for_one_leader(db, procs, holders) == "b"
    # 2. b's clock jumps a minute ahead at runtime: it fires t2 (minutely and daily) once.
    set_database_clock(db, offset_for(t2) + 1)
    wait_for(lambda: len(ticks(db, t2)) == 2, timeout=20, interval=0.1, message="t2 fired")
    # 3. b's clock jumps back, 30 s behind a: a (now ahead) takes over; a's clock reads before
    # t2 and b's before t1, and neither fires either again.
    set_database_clock(db, a_clock - 30)
    wait_for(lambda: (lease(db) or [None])[0] == names["a"], timeout=20, interval=0.1, message="a leads")
    assert wait_for_one_leader(db, procs, holders) == "a"
    [(renewed,)] = db("SELECT renewed_at FROM lamplighter.scheduler_lease")
    wait_for_polls_after(db, f"SELECT '{renewed.isoformat()}'::timestamptz", polls=3)
    assert shifted_now(a_clock) < t2

    found = ticks(db)
    assert [(t[0], t[1], t[2], t[3]) for t in found] == [
        ("berlin-daily", t2, "scheduled", "enqueued"),
        ("berlin-minutely", t1, "scheduled", "enqueued"),
        ("berlin-minutely", t2, "scheduled", "enqueued"),
    ]
    assert_each_tick_once(db, found)
    local = t2.astimezone(BERLIN)
    [daily] = db("SELECT cron, next_fire_at FROM lamplighter.schedules WHERE key = 'berlin-daily'")
    assert daily[0] == f"{local.minute} {local.hour} * * *"
    assert daily[1] == (local + timedelta(days=1)).astimezone(UTC)  # the same Berlin wall time tomorrow
    [(decoy_next,)] = db("SELECT next_fire_at FROM lamplighter.schedules WHERE key = 'berlin-decoy'")
    assert decoy_next.astimezone(BERLIN).strftime("%H:%M") == f"{decoy.hour:02d}:{decoy.minute:02d}"
    assert a.poll() is None and procs.started["b"].poll() is None
