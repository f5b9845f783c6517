"""Cron expressions and fire times (scheduler/cron.py): periodiq's parsing, our next-fire
computation, time zones and DST. Pure computation: no database, no network, no sleeps.

Transitions used below (2026):
  Europe/Berlin        spring 29 Mar 01:00Z (02:00 CET -> 03:00 CEST), fall 25 Oct 01:00Z (03:00 CEST -> 02:00 CET)
  America/New_York     spring  8 Mar 07:00Z (02:00 EST -> 03:00 EDT), fall  1 Nov 06:00Z (02:00 EDT -> 01:00 EST)
  Australia/Lord_Howe  spring  4 Oct (02:00 -> 02:30, +10:30 -> +11), fall 5 Apr (02:00 -> 01:30)
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import periodiq
import pytest

from scheduler.cron import (
    Cron,
    CronError,
    cron,
    fire_times_between,
    next_fire_time,
    next_fire_times,
    validate_zone,
)

UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def at(zone: str, *args, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)


# --- periodiq 0.14 defects, each routed around --------------------------------------------


@pytest.mark.parametrize("expression", ["@weekly", "0 2 * * sun", "0 2 * * 0", "0 2 * * SUN", "0 2 * * 7"])
def test_sunday_is_matched_however_it_is_spelled(expression):
    # periodiq compares day-of-week against isoweekday() (Sunday = 7): 0 / sun never matched.
    schedule = cron(expression)
    sunday = datetime(2026, 3, 1, schedule.hours[0], 0)
    assert sunday.weekday() == 6
    assert schedule.matches(sunday)
    assert not schedule.matches(sunday + timedelta(days=1))
    # From a Wednesday, the next fire is that Sunday.
    assert next_fire_time(schedule, utc(2026, 2, 25, 12, 0)) == sunday.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "after, expected",
    [
        # periodiq answered 1 March from Saturday 21 February: a week late.
        (utc(2026, 2, 21, 0, 0), utc(2026, 2, 22, 0, 0)),
        (utc(2026, 2, 28, 12, 0), utc(2026, 3, 1, 0, 0)),
        (utc(2026, 2, 22, 0, 0), utc(2026, 3, 1, 0, 0)),  # strictly after: not the same instant
        (utc(2026, 2, 21, 23, 59, 59), utc(2026, 2, 22, 0, 0)),
        (utc(2026, 2, 23, 0, 0), utc(2026, 3, 1, 0, 0)),
    ],
)
def test_day_of_week_7_does_not_skip_a_week(after, expected):
    assert next_fire_time(cron("0 0 * * 7"), after) == expected
    assert next_fire_time(cron("0 0 * * 0"), after) == expected


@pytest.mark.parametrize(
    "expression, after, expected",
    [
        # periodiq kept the minute when the hour rolled over: 02:15 instead of 02:00.
        ("*/15 2 * * *", utc(2026, 3, 2, 10, 7), utc(2026, 3, 3, 2, 0)),
        ("*/15 2 * * *", utc(2026, 3, 2, 2, 7), utc(2026, 3, 2, 2, 15)),
        ("*/15 2 * * *", utc(2026, 3, 2, 2, 45), utc(2026, 3, 3, 2, 0)),
        ("10,40 */6 * * *", utc(2026, 3, 2, 6, 41), utc(2026, 3, 2, 12, 10)),
        ("5 * * * *", utc(2026, 3, 2, 23, 30), utc(2026, 3, 3, 0, 5)),
        ("0 0 1 * *", utc(2026, 12, 31, 23, 59), utc(2027, 1, 1, 0, 0)),
    ],
)
def test_minute_and_hour_reset_when_a_larger_field_rolls_over(expression, after, expected):
    assert next_fire_time(cron(expression), after) == expected


def test_schedules_use_their_own_zone_not_the_local_one():
    # periodiq only knows pendulum.now()'s zone; here each schedule names its zone.
    daily_nine = cron("0 9 * * *")
    after = utc(2026, 4, 5, 0, 0)
    assert next_fire_time(daily_nine, after, "UTC") == utc(2026, 4, 5, 9, 0)
    assert next_fire_time(daily_nine, after, "Europe/Berlin") == utc(2026, 4, 5, 7, 0)
    assert next_fire_time(daily_nine, after, "America/New_York") == utc(2026, 4, 5, 13, 0)
    assert next_fire_time(daily_nine, after, "Asia/Kolkata") == utc(2026, 4, 5, 3, 30)


@pytest.mark.parametrize(
    "expression, problem",
    [
        ("0 2 * *", "4 fields"),  # periodiq: IndexError
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),  # periodiq: accepted
        ("5-1 * * * *", "range '5-1' is reversed"),  # periodiq: IndexError
        ("*/0 * * * *", "step in '*/0' must be at least 1"),  # periodiq: range() ValueError
        ("@reboot", "unknown shorthand"),  # periodiq: KeyError
    ],
)
def test_periodiq_crashes_become_cron_errors(expression, problem):
    with pytest.raises(CronError) as error:
        cron(expression)
    assert problem in str(error.value)
    assert repr(expression) in str(error.value)


# --- the periodiq way of declaring, and parsing ---------------------------------------------


def test_cron_helper_parses_like_cron_parse_and_compares_by_meaning():
    assert cron("0 2 * * sun") == Cron.parse("0 2 * * sun")
    assert cron("0 2 * * 7") == cron("0 2 * * 0") == cron("0 2 * * Sun")
    assert cron("0 0 1 1 *") == cron("@yearly") == cron("@annually")
    assert cron("0 2 * * *") != cron("0 3 * * *")
    assert str(cron("0 2 * * sun")) == "0 2 * * sun"
    assert cron("0 2 * * sun").expression == "0 2 * * sun"
    assert hash(cron("0 2 * * 7")) == hash(cron("0 2 * * 0"))


def test_a_periodiq_cronspec_is_read_with_our_semantics():
    # An actor declared with periodiq's own cron() still fires on Sundays.
    spec = periodiq.cron("0 2 * * sun")
    assert next_fire_time(spec, utc(2026, 2, 25, 0, 0)) == utc(2026, 3, 1, 2, 0)


@pytest.mark.parametrize(
    "expression, minutes, hours, days, months, weekdays",
    [
        ("* * * * *", range(60), range(24), range(1, 32), range(1, 13), range(7)),
        ("*/15 2 * * *", [0, 15, 30, 45], [2], range(1, 32), range(1, 13), range(7)),
        ("5/20 1-3 1,15 jan-mar mon-fri", [5, 25, 45], [1, 2, 3], [1, 15], [1, 2, 3], [1, 2, 3, 4, 5]),
        ("0 0 * * fri-sun", [0], [0], range(1, 32), range(1, 13), [0, 5, 6]),
        ("0 0 * * 5-7", [0], [0], range(1, 32), range(1, 13), [0, 5, 6]),
        ("0 0 * * 0,7", [0], [0], range(1, 32), range(1, 13), [0]),
        ("0 0 * * */2", [0], [0], range(1, 32), range(1, 13), [0, 2, 4, 6]),
        ("0 12 * JAN,Jul,dec *", [0], [12], range(1, 32), [1, 7, 12], range(7)),
        ("0-10/5,30 * * * *", [0, 5, 10, 30], range(24), range(1, 32), range(1, 13), range(7)),
        ("  0   2 * *  *  ", [0], [2], range(1, 32), range(1, 13), range(7)),
    ],
)
def test_fields_expand_to_the_values_they_allow(expression, minutes, hours, days, months, weekdays):
    parsed = cron(expression)
    assert parsed.minutes == tuple(minutes)
    assert parsed.hours == tuple(hours)
    assert parsed.days == tuple(days)
    assert parsed.months == tuple(months)
    assert parsed.weekdays == tuple(weekdays)


@pytest.mark.parametrize(
    "name, weekday",
    [("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)],
)
def test_weekday_names(name, weekday):
    schedule = cron(f"0 6 * * {name}")
    assert schedule.weekdays == (weekday,)
    fired = next_fire_time(schedule, utc(2026, 3, 1, 12, 0))  # a Sunday noon
    assert (fired.weekday() + 1) % 7 == weekday
    assert utc(2026, 3, 1, 12, 0) < fired <= utc(2026, 3, 8, 6, 0)


@pytest.mark.parametrize(
    "name, month",
    list(zip(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], range(1, 13))),
)
def test_month_names(name, month):
    # periodiq knows no month names; we add them.
    schedule = cron(f"0 0 1 {name} *")
    assert schedule.months == (month,)
    assert next_fire_time(schedule, utc(2026, 1, 1, 0, 0)) == utc(2026 if month > 1 else 2027, month, 1, 0, 0)


@pytest.mark.parametrize(
    "expression, after, expected",
    [
        ("@yearly", utc(2026, 3, 2, 10, 7), utc(2027, 1, 1, 0, 0)),
        ("@annually", utc(2026, 12, 31, 23, 59), utc(2027, 1, 1, 0, 0)),
        ("@monthly", utc(2026, 3, 2, 10, 7), utc(2026, 4, 1, 0, 0)),
        ("@monthly", utc(2026, 12, 1, 0, 0), utc(2027, 1, 1, 0, 0)),
        ("@weekly", utc(2026, 3, 2, 10, 7), utc(2026, 3, 8, 0, 0)),
        ("@weekly", utc(2026, 3, 7, 23, 59), utc(2026, 3, 8, 0, 0)),
        ("@daily", utc(2026, 3, 2, 10, 7), utc(2026, 3, 3, 0, 0)),
        ("@midnight", utc(2026, 2, 28, 0, 0), utc(2026, 3, 1, 0, 0)),
        ("@hourly", utc(2026, 3, 2, 10, 7), utc(2026, 3, 2, 11, 0)),
        ("@hourly", utc(2026, 3, 2, 23, 0), utc(2026, 3, 3, 0, 0)),
        ("@DAILY", utc(2026, 3, 2, 10, 7), utc(2026, 3, 3, 0, 0)),
    ],
)
def test_shorthands(expression, after, expected):
    assert next_fire_time(cron(expression), after) == expected


@pytest.mark.parametrize(
    "expression, wall, fires",
    [
        # Both restricted: either suffices (Vixie cron). 13 March 2026 is a Friday.
        ("0 0 13 * fri", datetime(2026, 3, 13), True),
        ("0 0 13 * fri", datetime(2026, 4, 13), True),  # a Monday, but the 13th
        ("0 0 13 * fri", datetime(2026, 4, 3), True),  # a Friday, not the 13th
        ("0 0 13 * fri", datetime(2026, 4, 4), False),
        # Day-of-week unrestricted: day-of-month alone decides.
        ("0 0 13 * *", datetime(2026, 4, 3), False),
        # Day-of-month unrestricted: day-of-week alone decides.
        ("0 0 * * fri", datetime(2026, 4, 13), False),
        # A field starting with * counts as unrestricted (Vixie's DOM_STAR), so both must match.
        ("0 0 */2 * fri", datetime(2026, 4, 3), True),  # odd day and Friday
        ("0 0 */2 * fri", datetime(2026, 4, 10), False),  # Friday, even day
        ("0 0 */2 * fri", datetime(2026, 4, 1), False),  # odd day, Wednesday
        # The month always has to match.
        ("0 0 13 jan fri", datetime(2026, 4, 3), False),
    ],
)
def test_day_of_month_or_day_of_week(expression, wall, fires):
    assert cron(expression).matches(wall) is fires


def test_matches_reads_the_minute_and_ignores_seconds():
    schedule = cron("30 2 * * *")
    assert schedule.matches(datetime(2026, 3, 2, 2, 30))
    assert schedule.matches(datetime(2026, 3, 2, 2, 30, 59))
    assert not schedule.matches(datetime(2026, 3, 2, 2, 31))
    assert not schedule.matches(datetime(2026, 3, 2, 3, 30))


def test_vixie_or_in_next_fire_times():
    fires = next_fire_times(cron("0 0 13 * fri"), utc(2026, 3, 30), count=4)
    assert fires == [utc(2026, 4, 3), utc(2026, 4, 10), utc(2026, 4, 13), utc(2026, 4, 17)]


# --- sparse schedules ------------------------------------------------------------------------


def test_leap_day_schedule():
    assert next_fire_times(cron("0 0 29 2 *"), utc(2026, 3, 1), count=3) == [
        utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29),
    ]
    # 2100 is not a leap year.
    assert next_fire_time(cron("0 0 29 2 *"), utc(2096, 3, 1)) == utc(2104, 2, 29)


def test_leap_day_on_a_sunday_is_found_decades_ahead():
    # */7 counts as unrestricted, so 29 February AND Sunday: 2032, then 2060.
    assert next_fire_time(cron("0 0 29 2 */7"), utc(2032, 3, 1)) == utc(2060, 2, 29)


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 feb *"])
def test_schedules_that_never_fire_are_rejected(expression):
    with pytest.raises(CronError, match="never fires"):
        cron(expression)


def test_day_31_fires_only_in_long_months():
    assert next_fire_times(cron("0 0 31 * *"), utc(2026, 1, 31, 1), count=3) == [
        utc(2026, 3, 31), utc(2026, 5, 31), utc(2026, 7, 31),
    ]


# --- time zones and DST ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone, after, expected",
    [
        # Spring forward: 02:30 does not exist; it fires once, shifted by the gap.
        ("Europe/Berlin", utc(2026, 3, 28, 12, 0), [at("Europe/Berlin", 2026, 3, 29, 3, 30), at("Europe/Berlin", 2026, 3, 30, 2, 30)]),
        ("America/New_York", utc(2026, 3, 7, 12, 0), [at("America/New_York", 2026, 3, 8, 3, 30), at("America/New_York", 2026, 3, 9, 2, 30)]),
        # Fall back: 02:30 happens twice in Berlin; it fires once, at the first (CEST, fold=0).
        ("Europe/Berlin", utc(2026, 10, 24, 12, 0), [at("Europe/Berlin", 2026, 10, 25, 2, 30), at("Europe/Berlin", 2026, 10, 26, 2, 30)]),
        # In New York 02:30 is after the repeated hour: once, in EST.
        ("America/New_York", utc(2026, 10, 31, 12, 0), [at("America/New_York", 2026, 11, 1, 2, 30), at("America/New_York", 2026, 11, 2, 2, 30)]),
    ],
)
def test_daily_0230_on_dst_days(zone, after, expected):
    fires = next_fire_times(cron("30 2 * * *"), after, zone, count=2)
    assert fires == [e.astimezone(UTC) for e in expected]
    assert [f.tzinfo for f in fires] == [UTC, UTC]


def test_daily_0230_instants_on_dst_days_spelled_out():
    berlin = "Europe/Berlin"
    assert next_fire_time(cron("30 2 * * *"), utc(2026, 3, 29), berlin) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert next_fire_time(cron("30 2 * * *"), utc(2026, 10, 25), berlin) == utc(2026, 10, 25, 0, 30)  # first 02:30
    # New York's repeated hour is 01:00-02:00: 01:30 fires at the first one (EDT).
    assert next_fire_time(cron("30 1 * * *"), utc(2026, 11, 1), "America/New_York") == utc(2026, 11, 1, 5, 30)


def test_gap_time_still_fires_when_asked_just_after_the_gap():
    # Asked at 03:10 CEST on spring-forward day: 02:30 has not fired yet; it fires at 03:30.
    after = at("Europe/Berlin", 2026, 3, 29, 3, 10)
    assert next_fire_time(cron("30 2 * * *"), after, "Europe/Berlin") == utc(2026, 3, 29, 1, 30)
    # ... and asked at 03:30 CEST it has fired: next is tomorrow.
    after = at("Europe/Berlin", 2026, 3, 29, 3, 30)
    assert next_fire_time(cron("30 2 * * *"), after, "Europe/Berlin") == utc(2026, 3, 30, 0, 30)


def test_repeated_time_does_not_fire_again_when_asked_during_the_second_pass():
    # 02:10 CET is the second 02:10 of 25 October; 02:45 already fired (CEST): next is tomorrow.
    after = at("Europe/Berlin", 2026, 10, 25, 2, 10, fold=1)
    assert next_fire_time(cron("45 2 * * *"), after, "Europe/Berlin") == at("Europe/Berlin", 2026, 10, 26, 2, 45).astimezone(UTC)


def _every(start: datetime, step_minutes: int, count: int) -> list[datetime]:
    return [start + timedelta(minutes=step_minutes * i) for i in range(count)]


@pytest.mark.parametrize(
    "zone, expression, after, expected",
    [
        # Spring forward: every real quarter-hour fires once; the gap's wall times land on
        # instants that fire anyway (02:15 -> 03:15 CEST), so nothing doubles.
        ("Europe/Berlin", "*/15 * * * *", utc(2026, 3, 29, 0, 40), _every(utc(2026, 3, 29, 0, 45), 15, 8)),
        ("America/New_York", "*/15 * * * *", utc(2026, 3, 8, 6, 40), _every(utc(2026, 3, 8, 6, 45), 15, 8)),
        ("Europe/Berlin", "0 * * * *", utc(2026, 3, 28, 23, 30), _every(utc(2026, 3, 29, 0, 0), 60, 4)),
        # Fall back: the repeated hour (02:00-02:59 CET, 01:00-01:59Z) does not fire again.
        (
            "Europe/Berlin", "*/15 * * * *", utc(2026, 10, 24, 23, 40),
            _every(utc(2026, 10, 24, 23, 45), 15, 5) + _every(utc(2026, 10, 25, 2, 0), 15, 3),
        ),
        (
            "America/New_York", "*/15 * * * *", utc(2026, 11, 1, 4, 40),
            _every(utc(2026, 11, 1, 4, 45), 15, 5) + _every(utc(2026, 11, 1, 7, 0), 15, 3),
        ),
        ("Europe/Berlin", "0 * * * *", utc(2026, 10, 24, 23, 30), [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 3, 0)]),
        # Lord Howe shifts by 30 minutes: 02:00-02:29 do not exist on 4 October.
        (
            "Australia/Lord_Howe", "*/15 * * * *", at("Australia/Lord_Howe", 2026, 10, 4, 1, 40),
            [at("Australia/Lord_Howe", 2026, 10, 4, 1, 45).astimezone(UTC)]
            + _every(at("Australia/Lord_Howe", 2026, 10, 4, 2, 30).astimezone(UTC), 15, 3),
        ),
        # ... and 01:30-01:59 happen twice on 5 April: only the first pass fires.
        (
            "Australia/Lord_Howe", "*/15 * * * *", at("Australia/Lord_Howe", 2026, 4, 5, 1, 10),
            [at("Australia/Lord_Howe", 2026, 4, 5, h, m).astimezone(UTC) for h, m in ((1, 15), (1, 30), (1, 45), (2, 0), (2, 15))],
        ),
    ],
)
def test_frequent_schedules_across_transitions(zone, expression, after, expected):
    fires = next_fire_times(cron(expression), after, zone, count=len(expected))
    assert fires == expected


@pytest.mark.parametrize(
    "zone, expression, day",
    [
        ("Europe/Berlin", "0,30 2,3 * * *", datetime(2026, 3, 29)),  # 02:xx shifts onto 03:xx
        ("Europe/Berlin", "30 2 * * *", datetime(2026, 3, 29)),
        ("Europe/Berlin", "*/5 * * * *", datetime(2026, 3, 29)),
        ("Europe/Berlin", "*/5 * * * *", datetime(2026, 10, 25)),
        ("America/New_York", "15,45 1-3 * * *", datetime(2026, 3, 8)),
        ("America/New_York", "15,45 1-3 * * *", datetime(2026, 11, 1)),
        ("Australia/Lord_Howe", "*/10 1-3 * * *", datetime(2026, 10, 4)),
        ("Australia/Lord_Howe", "*/10 1-3 * * *", datetime(2026, 4, 5)),
    ],
)
def test_fire_times_are_strictly_increasing_and_unique_on_dst_days(zone, expression, day):
    schedule, tz = cron(expression), ZoneInfo(zone)
    start = day.replace(tzinfo=tz) - timedelta(hours=1)
    fires = fire_times_between(schedule, start, start + timedelta(hours=26), zone)
    assert fires, "expected fire times on the DST day"
    assert all(a < b for a, b in zip(fires, fires[1:]))
    # Every fire time's wall reading matches the expression, or is a gap time shifted forward.
    for fire in fires:
        wall = fire.astimezone(tz).replace(tzinfo=None)
        assert schedule.matches(wall) or _is_shifted_gap_time(schedule, fire, tz)


def test_gap_and_real_time_that_share_an_instant_fire_once():
    fires = fire_times_between(
        cron("0,30 2,3 * * *"), utc(2026, 3, 28, 23), utc(2026, 3, 29, 3), "Europe/Berlin"
    )
    assert fires == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]  # 03:00 and 03:30 CEST


def _is_shifted_gap_time(schedule: Cron, fire: datetime, tz: ZoneInfo) -> bool:
    wall = fire.astimezone(tz).replace(tzinfo=None)
    for shift in range(1, 121):
        earlier = wall - timedelta(minutes=shift)
        if schedule.matches(earlier) and earlier.replace(tzinfo=tz).astimezone(UTC) == fire:
            return True
    return False


@pytest.mark.parametrize(
    "zone, after, expected",
    [
        ("UTC", utc(2026, 6, 1, 12, 0), utc(2026, 6, 2, 2, 0)),
        ("Europe/Berlin", utc(2026, 6, 1, 12, 0), utc(2026, 6, 2, 0, 0)),  # CEST, +2
        ("Europe/Berlin", utc(2026, 1, 1, 12, 0), utc(2026, 1, 2, 1, 0)),  # CET, +1
        ("America/New_York", utc(2026, 6, 1, 12, 0), utc(2026, 6, 2, 6, 0)),  # EDT, -4
        ("America/New_York", utc(2026, 1, 1, 12, 0), utc(2026, 1, 2, 7, 0)),  # EST, -5
        ("Asia/Kolkata", utc(2026, 6, 1, 12, 0), utc(2026, 6, 1, 20, 30)),  # +5:30: 02:00 IST on 2 June
        ("Australia/Lord_Howe", utc(2026, 6, 1, 12, 0), utc(2026, 6, 1, 15, 30)),  # +10:30
        ("Australia/Lord_Howe", utc(2026, 1, 1, 12, 0), utc(2026, 1, 1, 15, 0)),  # +11
    ],
)
def test_daily_0200_in_several_zones(zone, after, expected):
    assert next_fire_time(cron("0 2 * * *"), after, zone) == expected


def test_after_may_be_in_any_zone_and_result_is_utc():
    after = at("Asia/Kolkata", 2026, 6, 1, 17, 30)  # 12:00Z
    fired = next_fire_time(cron("0 * * * *"), after, "Europe/Berlin")
    assert fired == utc(2026, 6, 1, 13, 0)
    assert fired.tzinfo is UTC


def test_seconds_in_after_are_respected():
    schedule = cron("7 10 * * *")
    assert next_fire_time(schedule, utc(2026, 3, 2, 10, 6, 59, 999999)) == utc(2026, 3, 2, 10, 7)
    assert next_fire_time(schedule, utc(2026, 3, 2, 10, 7, 0, 1)) == utc(2026, 3, 3, 10, 7)


def test_naive_after_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_time(cron("* * * * *"), datetime(2026, 3, 2, 10, 7))


# --- next_fire_times and fire_times_between ---------------------------------------------------


def test_next_fire_times_counts():
    schedule = cron("0 */6 * * *")
    assert next_fire_times(schedule, utc(2026, 3, 2, 1, 0)) == [utc(2026, 3, 2, 6), utc(2026, 3, 2, 12), utc(2026, 3, 2, 18)]
    assert next_fire_times(schedule, utc(2026, 3, 2, 1, 0), count=1) == [utc(2026, 3, 2, 6)]
    assert next_fire_times(schedule, utc(2026, 3, 2, 1, 0), count=0) == []


@pytest.mark.parametrize(
    "start, end, expected",
    [
        # (start, end]: start excluded, end included.
        (utc(2026, 3, 2, 6, 0), utc(2026, 3, 2, 18, 0), [utc(2026, 3, 2, 12), utc(2026, 3, 2, 18)]),
        (utc(2026, 3, 2, 5, 59), utc(2026, 3, 2, 6, 0), [utc(2026, 3, 2, 6)]),
        (utc(2026, 3, 2, 6, 0), utc(2026, 3, 2, 11, 59), []),
        (utc(2026, 3, 2, 12, 0), utc(2026, 3, 2, 12, 0), []),
        (utc(2026, 3, 2, 18, 0), utc(2026, 3, 2, 6, 0), []),  # reversed window
    ],
)
def test_fire_times_between(start, end, expected):
    assert fire_times_between(cron("0 */6 * * *"), start, end) == expected


def test_fire_times_between_keeps_the_latest_when_over_the_limit():
    # Misfire handling takes the latest missed tick: the limit must not cut it off.
    fires = fire_times_between(cron("* * * * *"), utc(2026, 3, 2, 0, 0), utc(2026, 3, 3, 0, 0), limit=10)
    assert fires == _every(utc(2026, 3, 2, 23, 51), 1, 10)
    assert len(fire_times_between(cron("* * * * *"), utc(2026, 3, 2, 0, 0), utc(2026, 3, 3, 0, 0))) == 1000


def test_fire_times_between_across_a_dst_change():
    fires = fire_times_between(
        cron("0 2 * * *"), utc(2026, 10, 22, 23, 59), utc(2026, 10, 27), "Europe/Berlin"
    )
    assert fires == [utc(2026, 10, 23, 0), utc(2026, 10, 24, 0), utc(2026, 10, 25, 0), utc(2026, 10, 26, 1)]


def test_negative_count_is_refused():
    with pytest.raises(ValueError, match="count"):
        next_fire_times(cron("* * * * *"), utc(2026, 1, 1), count=-1)


def test_zero_limit_is_refused():
    with pytest.raises(ValueError, match="limit"):
        fire_times_between(cron("* * * * *"), utc(2026, 1, 1), utc(2026, 1, 2), limit=0)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, fragments",
    [
        ("", ["empty cron expression"]),
        ("   ", ["empty cron expression"]),
        ("* * * *", ["4 fields, expected 5"]),
        ("0 * * * * *", ["6 fields, expected 5", "no seconds"]),
        ("@reboot", ["unknown shorthand", "@daily"]),
        ("60 * * * *", ["minute field", "60 is out of range 0-59"]),
        ("0 24 * * *", ["hour field", "24 is out of range 0-23"]),
        ("0 0 0 * *", ["day-of-month field", "0 is out of range 1-31"]),
        ("0 0 32 * *", ["day-of-month field", "32 is out of range 1-31"]),
        ("0 0 * 13 *", ["month field", "13 is out of range 1-12"]),
        ("0 0 * 0 *", ["month field", "0 is out of range 1-12"]),
        ("0 0 * * 8", ["day-of-week field", "8 is out of range 0-7"]),
        ("0 0 * * sunday", ["day-of-week field", "unknown name 'sunday'", "sun, mon"]),
        ("0 0 * foo *", ["month field", "unknown name 'foo'", "jan, feb"]),
        ("mon 0 * * *", ["minute field", "not a number", "month and day-of-week only"]),
        ("0 0 jan * *", ["day-of-month field", "not a number"]),
        ("5-1 * * * *", ["minute field", "range '5-1' is reversed"]),
        ("0 0 * * 5-0", ["day-of-week field", "reversed", "Sunday may be written 7"]),
        ("*/0 * * * *", ["minute field", "must be at least 1"]),
        ("1,,2 * * * *", ["minute field", "empty list item"]),
        ("1, * * * *", ["minute field", "empty list item"]),
        ("-5 * * * *", ["minute field", "cannot read '-5'"]),
        ("*/x * * * *", ["minute field", "cannot read '*/x'"]),
        ("1-2-3 * * * *", ["minute field", "cannot read '1-2-3'"]),
        ("? * * * *", ["minute field", "cannot read '?'"]),
        ("L * * * *", ["minute field", "not a number"]),
        ("0 0 31 2 *", ["never fires"]),
    ],
)
def test_invalid_expressions_say_what_and_where(expression, fragments):
    with pytest.raises(CronError) as error:
        cron(expression)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message
    if expression.strip():
        assert repr(expression) in message


def test_cron_error_is_a_value_error():
    assert issubclass(CronError, ValueError)
    with pytest.raises(ValueError):
        cron("nope")


def test_non_string_expression():
    with pytest.raises(CronError, match="must be a string"):
        Cron.parse(None)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_known_zones(zone):
    assert validate_zone(zone) == ZoneInfo(zone)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe", "../etc/passwd", "/etc/localtime", "Europe/Berlin "])
def test_unknown_zones_say_which(zone):
    with pytest.raises(CronError) as error:
        validate_zone(zone)
    assert repr(zone) in str(error.value)
    assert "IANA" in str(error.value)


@pytest.mark.parametrize("zone", ["", "   ", None, 1])
def test_empty_or_non_string_zone(zone):
    with pytest.raises(CronError, match="IANA"):
        validate_zone(zone)


def test_unknown_zone_is_reported_by_next_fire_time():
    with pytest.raises(CronError, match="unknown time zone 'Moon/Tranquility'"):
        next_fire_time(cron("* * * * *"), utc(2026, 1, 1), "Moon/Tranquility")


# --- against a brute-force reference -----------------------------------------------------------

REFERENCE_ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
# DST transitions, where skipping bugs and DST mistakes would show: (zone, instant, the local
# hour that is skipped or repeated).
TRANSITIONS = [
    ("Europe/Berlin", utc(2026, 3, 29, 1), 2),
    ("Europe/Berlin", utc(2026, 10, 25, 1), 2),
    ("America/New_York", utc(2026, 3, 8, 7), 2),
    ("America/New_York", utc(2026, 11, 1, 6), 1),
    ("Australia/Lord_Howe", at("Australia/Lord_Howe", 2026, 10, 4, 2, 30).astimezone(UTC), 2),
    ("Australia/Lord_Howe", at("Australia/Lord_Howe", 2026, 4, 5, 1, 30, fold=1).astimezone(UTC), 1),
]
HORIZON = timedelta(days=3)


def _random_field(rng: random.Random, low: int, high: int, names: list[str] | None = None) -> str:
    def value() -> str:
        number = rng.randint(low, high)
        if names and rng.random() < 0.3:
            return names[number % len(names)] if low == 0 else names[number - 1]
        return str(number)

    kind = rng.choice(["*", "*", "*", "star_step", "value", "list", "range", "range_step", "start_step"])
    if kind == "*":
        return "*"
    if kind == "star_step":
        return f"*/{rng.randint(1, max(1, (high - low) // 2))}"
    if kind == "value":
        return value()
    if kind == "list":
        return ",".join(str(rng.randint(low, high)) for _ in range(rng.randint(2, 4)))
    a, b = sorted(rng.sample(range(low, high + 1), 2))
    if kind == "range":
        return f"{a}-{b}"
    if kind == "range_step":
        return f"{a}-{b}/{rng.randint(1, 5)}"
    return f"{a}/{rng.randint(1, 10)}"


def _random_expression(rng: random.Random) -> str:
    days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    return " ".join([
        _random_field(rng, 0, 59),
        _random_field(rng, 0, 23),
        # Mostly unrestricted days and months, so that most cases fire within the horizon.
        _random_field(rng, 1, 31) if rng.random() < 0.3 else "*",
        _random_field(rng, 1, 12, months) if rng.random() < 0.15 else "*",
        _random_field(rng, 0, 7, days) if rng.random() < 0.4 else "*",
    ])


def _reference_fire_times(schedule: Cron, after: datetime, zone: str) -> list[datetime]:
    """By definition, minute by minute: every wall time the expression matches, converted
    with fold=0, strictly after `after`, deduplicated. Walks from 2 hours before `after`'s
    wall time (DST shifts in these zones are at most one hour) to HORIZON after it."""
    tz = ZoneInfo(zone)
    wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) - timedelta(hours=2)
    stop = wall + HORIZON + timedelta(hours=2)
    fires = set()
    while wall <= stop:
        if schedule.matches(wall):
            instant = wall.replace(tzinfo=tz).astimezone(UTC)
            if instant > after:
                fires.add(instant)
        wall += timedelta(minutes=1)
    return sorted(fires)


def _reference_cases(count: int, seed: int):
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        expression = _random_expression(rng)
        if rng.random() < 0.5:
            # Around a transition, often with the skipped or repeated hour (and not the next
            # one, so a shifted gap time is not also a real fire time), asked within a few
            # hours of it, often just after the gap where only a lookback finds the gap time.
            zone, transition, hour = rng.choice(TRANSITIONS)
            if rng.random() < 0.6:
                fields = expression.split()
                fields[1] = rng.choice([str(hour), f"{hour - 1},{hour}", f"{hour},{hour + 2}-{hour + 5}", f"{hour}/6"])
                expression = " ".join(fields)
            minutes = rng.randint(-30, 90) if rng.random() < 0.6 else rng.randint(-26 * 60, 26 * 60)
            after = transition + timedelta(minutes=minutes, seconds=rng.choice([0, 0, 30]))
        else:
            zone = rng.choice(REFERENCE_ZONES)
            after = utc(2024, 1, 1) + timedelta(minutes=rng.randint(0, 6 * 365 * 24 * 60), seconds=rng.choice([0, 0, 30]))
        try:
            schedule = cron(expression)
        except CronError:
            continue  # e.g. a random "31" in February only
        cases.append(pytest.param(expression, schedule, zone, after, id=f"{len(cases)}:{zone}:{expression}"))
    return cases


@pytest.mark.parametrize("expression, schedule, zone, after", _reference_cases(300, seed=20260329))
def test_next_fire_times_agree_with_brute_force(expression, schedule, zone, after):
    reference = _reference_fire_times(schedule, after, zone)
    # Beyond the walk, a later wall time could still shift onto an instant up to an hour
    # earlier: trust the reference only up to an hour before its end.
    trusted_until = after + HORIZON - timedelta(hours=1)
    trusted = [instant for instant in reference if instant <= trusted_until]

    fires = next_fire_times(schedule, after, zone, count=len(trusted) + 1)
    assert fires[: len(trusted)] == trusted
    assert fires[len(trusted)] > trusted_until
    assert next_fire_time(schedule, after, zone) == fires[0]
    assert fire_times_between(schedule, after, trusted_until, zone, limit=10_000) == trusted
