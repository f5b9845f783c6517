"""Scheduler rules without a database: the misfire decision, declarations next to actors, and
their validation at the release step."""
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dramatiq
import periodiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from scheduler import policy, sync
from scheduler.cron import Cron
from storage import settings as settings_module
from storage.schedules import DeclarationError, PeriodicSchedules, Schedule, declared_schedules, schedule

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ---- the misfire decision ------------------------------------------------------------------

MINUTELY = Cron.parse("* * * * *")


def test_on_time_tick_fires_as_scheduled():
    d = policy.decide(MINUTELY, "UTC", due_since=at("2026-05-01 10:00"), now=at("2026-05-01 10:00:00.400"),
                      grace=60, misfire="skip")
    assert (d.fire_at, d.kind, d.enqueue, d.missed) == (at("2026-05-01 10:00"), "scheduled", True, 1)
    assert d.next_fire_at == at("2026-05-01 10:01")


def test_a_tick_late_within_the_grace_still_fires_as_itself():
    # A failover across a minute boundary: the new leader is 14 s late.
    d = policy.decide(MINUTELY, "UTC", due_since=at("2026-05-01 10:00"), now=at("2026-05-01 10:00:14"),
                      grace=60, misfire="skip")
    assert (d.kind, d.enqueue, d.late_seconds) == ("scheduled", True, 14.0)


@pytest.mark.parametrize("misfire, enqueue", [("run_once", True), ("skip", False)])
def test_three_missed_ticks_give_one_catch_up_or_none(misfire, enqueue):
    d = policy.decide(MINUTELY, "UTC", due_since=at("2026-05-01 10:01"), now=at("2026-05-01 10:03:40"),
                      grace=10, misfire=misfire)
    # One decision for three missed ticks, recorded with the latest of them: never a burst.
    assert (d.fire_at, d.kind, d.enqueue, d.missed) == (at("2026-05-01 10:03"), "catch_up", enqueue, 3)
    assert d.next_fire_at == at("2026-05-01 10:04")


def test_latest_on_time_tick_covers_earlier_missed_ones():
    d = policy.decide(MINUTELY, "UTC", due_since=at("2026-05-01 10:01"), now=at("2026-05-01 10:03:05"),
                      grace=10, misfire="skip")
    assert (d.fire_at, d.kind, d.enqueue, d.missed) == (at("2026-05-01 10:03"), "scheduled", True, 3)


def test_a_stored_time_that_is_not_a_fire_time_only_moves_on():
    d = policy.decide(Cron.parse("0 2 * * *"), "UTC", due_since=at("2026-05-01 10:17"),
                      now=at("2026-05-01 10:20"), grace=60, misfire="run_once")
    assert (d.fire_at, d.enqueue, d.next_fire_at) == (None, False, at("2026-05-02 02:00"))


def test_a_long_outage_of_a_minutely_schedule_is_one_decision():
    d = policy.decide(MINUTELY, "UTC", due_since=at("2026-05-01 00:00"), now=at("2026-05-08 00:00:30"),
                      grace=10, misfire="run_once")
    assert (d.fire_at, d.missed) == (at("2026-05-08 00:00"), 7 * 1440 + 1)


@pytest.mark.parametrize("day, expected_utc", [
    # 02:30 Europe/Berlin does not exist on the spring-forward day: 03:30 CEST = 01:30 UTC.
    ("2026-03-29", "2026-03-29 01:30"),
    # 02:30 happens twice on the fall-back day: the first one, CEST = 00:30 UTC.
    ("2026-10-25", "2026-10-25 00:30"),
])
def test_dst_days_fire_once_in_the_schedules_zone(day, expected_utc):
    cron = Cron.parse("30 2 * * *")
    due = at(expected_utc)
    d = policy.decide(cron, "Europe/Berlin", due_since=due, now=due + timedelta(seconds=1), grace=60,
                      misfire="run_once")
    assert (d.fire_at, d.kind, d.missed) == (due, "scheduled", 1)
    # The next one is the ordinary 02:30 of the following day, once.
    following = datetime.fromisoformat(day).date() + timedelta(days=1)
    assert d.next_fire_at.astimezone(ZoneInfo("Europe/Berlin")).date() == following
    late = policy.decide(cron, "Europe/Berlin", due_since=due, now=due + timedelta(hours=3), grace=60,
                         misfire="run_once")
    assert (late.fire_at, late.kind, late.missed) == (due, "catch_up", 1)


# ---- declarations ----------------------------------------------------------------------------

def test_schedule_keeps_periodiqs_cron_as_its_text():
    s = schedule("reports.weekly", periodiq.cron("0 2 * * sun"), zone="Europe/Berlin", kwargs={"r": "eu"},
                 misfire="skip", grace=300, overlap="skip")
    assert s == Schedule("reports.weekly", "0 2 * * sun", "Europe/Berlin", (), {"r": "eu"}, "skip", 300, "skip")


@pytest.mark.parametrize("kwargs, problem", [
    ({"key": "has space"}, "schedule key"),
    ({"key": "a@b"}, "schedule key"),
    ({"misfire": "burst"}, "misfire must be one of run_once, skip"),
    ({"overlap": "queue"}, "overlap must be one of allow, skip"),
    ({"grace": -1}, "grace must be zero or more"),
    ({"kwargs": {"when": datetime(2026, 1, 1)}}, "JSON types"),
])
def test_malformed_schedule_is_refused_where_it_is_declared(kwargs, problem):
    arguments = {"key": "k", "cron": "* * * * *", **kwargs}
    with pytest.raises(DeclarationError, match=problem):
        schedule(arguments.pop("key"), arguments.pop("cron"), **arguments)


def test_bare_cron_is_keyed_by_the_actor_name():
    assert declared_schedules("maintenance.prune", periodiq.cron("0 3 * * *")) == [
        Schedule("maintenance.prune", "0 3 * * *")]


def test_duplicate_keys_on_one_actor_are_refused():
    with pytest.raises(DeclarationError, match="reports.daily: schedule key.*declared twice: a"):
        declared_schedules("reports.daily", [schedule("a", "0 1 * * *"), schedule("a", "0 2 * * *")])


def _broker_with(*declarations):
    broker = StubBroker(middleware=[Retries(max_retries=7), PeriodicSchedules()])
    actors = []
    for name, options in declarations:
        actors.append(dramatiq.actor(lambda **_: None, actor_name=name, queue_name="maintenance", broker=broker,
                                     **options))
    return broker


def test_dramatiq_accepts_periodic_only_with_the_middleware():
    bare = StubBroker(middleware=[])
    with pytest.raises(ValueError, match="periodic"):
        dramatiq.actor(lambda: None, actor_name="x", broker=bare, periodic=periodiq.cron("* * * * *"))
    broker = _broker_with(("x", {"periodic": periodiq.cron("* * * * *")}))
    assert "periodic" in broker.get_actor("x").options


def test_the_middleware_checks_shape_at_declaration():
    with pytest.raises(DeclarationError, match="x: periodic= takes cron"):
        _broker_with(("x", {"periodic": 42}))


def test_definitions_carry_actor_queue_priority_and_attempts():
    broker = _broker_with(
        ("maintenance.prune", {"periodic": periodiq.cron("0 3 * * *"), "max_retries": 3, "priority": 50}),
        ("reports.weekly", {"periodic": [schedule("reports.weekly.eu", "0 2 * * sun", zone="Europe/Berlin",
                                                  kwargs={"region": "eu"})]}),
        ("not.periodic", {}),
    )
    found = {d.key: d for d in sync.definitions_from_broker(broker)}
    assert set(found) == {"maintenance.prune", "reports.weekly.eu"}
    prune = found["maintenance.prune"]
    assert (prune.actor_name, prune.queue_name, prune.priority, prune.max_attempts, prune.zone) == \
        ("maintenance.prune", "maintenance", 50, 4, "UTC")
    weekly = found["reports.weekly.eu"]
    assert (weekly.max_attempts, weekly.kwargs, weekly.misfire, weekly.grace_seconds) == (8, {"region": "eu"},
                                                                                           "run_once", 60.0)


@pytest.mark.parametrize("declared, message", [
    (schedule("r.bad", "0 25 * * *"), re.escape("reports.x: schedule 'r.bad': invalid cron expression '0 25 * * *': hour")),
    (schedule("r.zone", "0 2 * * *", zone="Europe/Berlln"), re.escape("reports.x: schedule 'r.zone': unknown time zone")),
    (schedule("r.never", "0 0 30 2 *"), "reports.x: schedule 'r.never': cron expression .* never fires"),
])
def test_release_step_refuses_bad_expressions_naming_the_actor(declared, message):
    broker = _broker_with(("reports.x", {"periodic": [declared]}))
    with pytest.raises(DeclarationError, match=message) as caught:
        sync.definitions_from_broker(broker)
    assert "\n" not in str(caught.value)


def test_keys_are_unique_across_actors():
    broker = _broker_with(("a.one", {"periodic": [schedule("shared", "0 1 * * *")]}),
                          ("b.two", {"periodic": [schedule("shared", "0 2 * * *")]}))
    with pytest.raises(DeclarationError, match="b.two: schedule key 'shared' is already declared by a.one"):
        sync.definitions_from_broker(broker)


def test_the_platforms_declarations_are_valid():
    import actors

    for definition in sync.definitions_from_broker(actors.broker):
        assert definition.actor_name in actors.broker.actors


# ---- settings ----------------------------------------------------------------------------------

def test_scheduler_settings_and_their_check():
    loaded = settings_module.load({"LAMPLIGHTER_SCHEDULER_LEASE_TTL": "2", "LAMPLIGHTER_SCHEDULER_POLL_INTERVAL": "1"})
    assert (loaded.scheduler_lease_ttl, loaded.scheduler_poll_interval) == (2.0, 1.0)
    defaults = settings_module.load({})
    # A standby takes over within 15 s of the leader's death: TTL + one poll.
    assert defaults.scheduler_lease_ttl + defaults.scheduler_poll_interval <= 15
    with pytest.raises(settings_module.SettingsError, match="LAMPLIGHTER_SCHEDULER_LEASE_TTL"):
        settings_module.load({"LAMPLIGHTER_SCHEDULER_LEASE_TTL": "1", "LAMPLIGHTER_SCHEDULER_POLL_INTERVAL": "1"})


# ---- next fire times in more zones (southern hemisphere, DST at midnight) ------------------------

@pytest.mark.parametrize("zone, expression, after, expected_utc", [
    # Sydney springs forward 4 Oct 2026 at 02:00 AEST -> 03:00 AEDT: 02:30 fires at 03:30 AEDT.
    ("Australia/Sydney", "30 2 * * *", "2026-10-03 00:00",
     ["2026-10-03 16:30", "2026-10-04 15:30", "2026-10-05 15:30"]),
    # Sydney falls back 5 Apr 2026 at 03:00 AEDT -> 02:00 AEST: 02:30 fires once, the first (AEDT).
    ("Australia/Sydney", "30 2 * * *", "2026-04-04 00:00",
     ["2026-04-04 15:30", "2026-04-05 16:30", "2026-04-06 16:30"]),
    # Santiago springs forward at midnight (6 Sep 2026 00:00 -04 -> 01:00 -03): midnight fires at 01:00.
    ("America/Santiago", "0 0 * * *", "2026-09-05 00:00",
     ["2026-09-05 04:00", "2026-09-06 04:00", "2026-09-07 03:00"]),
    # Santiago falls back at midnight (5 Apr 2026 00:00 -03 -> 23:00 -04): 00:00 of the 5th happens once.
    ("America/Santiago", "0 0 * * *", "2026-04-03 00:00",
     ["2026-04-03 03:00", "2026-04-04 03:00", "2026-04-05 04:00"]),
])
def test_next_fire_times_across_southern_and_midnight_dst_changes(zone, expression, after, expected_utc):
    from scheduler.cron import next_fire_times

    assert next_fire_times(Cron.parse(expression), at(after), zone, 3) == [at(t) for t in expected_utc]


def test_periodic_middleware_never_drops_a_late_message():
    # periodiq's PeriodiqMiddleware(skip_delay=30) raises SkipMessage for a message older than
    # 30 s; ours has no message hook at all, so a scheduled job runs however long it waited.
    import actors

    ours = [m for m in actors.broker.middleware if isinstance(m, PeriodicSchedules)]
    assert len(ours) == 1
    assert not any(type(m) is periodiq.PeriodiqMiddleware for m in actors.broker.middleware)
    hooks = [name for name in vars(PeriodicSchedules) if name.endswith("_message")]
    assert hooks == []
