"""Cron expressions and their fire times, in a schedule's own time zone.

Schedules are declared the periodiq way, ``periodic=cron("0 2 * * *")``, and the field parsing
is periodiq's (``periodiq.CronSpec.parse`` and its ``expand_valid``). What periodiq 0.14 gets
wrong is routed around here, each with a regression test in tests/unit/test_cron.py:

* day-of-week 0 / ``sun`` never matches (``CronSpec.validate`` compares against
  ``isoweekday()``, where Sunday is 7), so ``@weekly`` never fires: we normalise 7 to 0 and
  match against ``(weekday() + 1) % 7``;
* ``0 0 * * 7`` asked on a Saturday skips a week, and ``*/15 2 * * *`` asked at 10:07 answers
  02:15 instead of 02:00 (the minute is not reset when the hour rolls over): we never call
  ``CronSpec.next_valid_date``; the next fire time is computed below, field by field;
* periodiq only knows the local zone (``pendulum.now()``): every schedule here has one IANA
  zone, fire times are found in that zone's wall time and returned as aware UTC datetimes;
* bad input gives KeyError / IndexError / silently wrong schedules (``60 * * * *`` is accepted,
  ``5/15`` means just 5): every field is validated first and errors are `CronError`.

Semantics we chose (documented once, here):

* Day of month and day of week follow Vixie cron (and cronie, Debian cron): when both fields
  are restricted, a day matches if EITHER matches (``0 0 13 * fri`` runs on every 13th and on
  every Friday). A field counts as unrestricted when its text starts with ``*`` -- so ``*/2``
  in day-of-month counts as unrestricted and both fields must then match, exactly as Vixie does.
* Names: ``sun``..``sat`` and ``jan``..``dec``, case-insensitive (periodiq knows day names only,
  we add month names). Day-of-week 7 is Sunday too, and ``sun`` ending a range means 7, so
  ``fri-sun`` works. A reversed range (``5-1``) is an error, not a wrap-around.
* ``N/S`` means ``N-max/S`` (every S from N), as croniter and most crons read it; periodiq
  would read it as just N.
* An expression that can never fire (``0 0 31 2 *``, ``0 0 30 2 *``) is rejected when parsed.
* Seconds are not part of an expression: a wall time matches on its minute.

Time zones and daylight saving time. A schedule fires once for every wall-clock minute its
expression matches, at the instant zoneinfo gives that wall time with ``fold=0``:

* fall-back (a wall time happens twice): the FIRST occurrence fires, the repeated one does
  not. A daily 02:30 job fires once; an hourly or ``*/15`` job does not fire during the
  repeated hour, so no wall-clock time is ever served twice;
* spring-forward (a wall time does not exist): it fires at the wall time shifted forward by
  the gap, as zoneinfo normalises it (02:30 Europe/Berlin on the last Sunday of March is
  03:30 CEST). When that shifted instant is also a fire time in its own right (``*/15 * * * *``
  at 03:00 and 02:00), it fires once: fire times are strictly increasing and unique.
"""
from __future__ import annotations

import heapq
import re
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import periodiq

__all__ = [
    "Cron",
    "as_cron",
    "CronError",
    "cron",
    "fire_times_between",
    "next_fire_time",
    "next_fire_times",
    "validate_zone",
]


class CronError(ValueError):
    """An invalid cron expression or time zone, or a schedule that never fires."""


# The search for the next fire time gives up after this many years without one. Any
# expression that passes the parse-time "never fires" check fires within 40 years (the
# worst case is 29 February on one given weekday, which skips 2100), so this never trips
# on a valid schedule; it only keeps a bug from becoming an endless loop.
MAX_SEARCH_YEARS = 50

_ONE_MINUTE = timedelta(minutes=1)
_DAYS_IN_MONTH_AT_MOST = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_WEEKDAY_NAMES = {name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES),
    # 0 and 7 are both Sunday, as in every cron; 7 is folded into 0 after parsing.
    _Field("day-of-week", 0, 7, _WEEKDAY_NAMES),
)

# One comma-separated item of a field: *, N, N-M, each with an optional /STEP.
_ITEM = re.compile(r"(?:(?P<star>\*)|(?P<start>[a-z]+|\d+)(?:-(?P<end>[a-z]+|\d+))?)(?:/(?P<step>\d+))?")


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the values each field allows, as sorted tuples.

    Build one with `Cron.parse` or `cron`. Equality is by meaning, not spelling:
    ``cron("0 2 * * 7") == cron("0 2 * * sun")``.
    """

    expression: str = field(compare=False)
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]  # day of month, 1-31
    months: tuple[int, ...]  # 1-12
    weekdays: tuple[int, ...]  # 0 = Sunday .. 6 = Saturday
    # Vixie's DOM_STAR / DOW_STAR: whether the field's text was restricted (did not start with *).
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        if not isinstance(expression, str):
            raise CronError(f"a cron expression must be a string, got {expression!r}")
        text = expression.strip()
        if not text:
            raise CronError("empty cron expression: expected 5 fields (minute hour day-of-month month day-of-week)")
        if text.startswith("@"):
            # periodiq's table of shorthands (@yearly, @monthly, @weekly, @daily, @hourly, ...).
            named = periodiq.CronSpec._named_spec
            if text.lower() not in named:
                raise CronError(
                    f"invalid cron expression {expression!r}: unknown shorthand; "
                    f"known: {', '.join(sorted(named))}"
                )
            text = named[text.lower()]
        raw_fields = text.split()
        if len(raw_fields) != 5:
            raise CronError(
                f"invalid cron expression {expression!r}: {len(raw_fields)} fields, expected 5 "
                "(minute hour day-of-month month day-of-week; no seconds, no year)"
            )

        numeric = [_normalise_field(expression, spec, raw.lower()) for spec, raw in zip(_FIELDS, raw_fields)]
        try:
            # The fields are validated and purely numeric now, which periodiq parses correctly.
            parsed = periodiq.CronSpec.parse(" ".join(numeric))
        except Exception as error:  # pragma: no cover - validation above should make this unreachable
            raise CronError(f"invalid cron expression {expression!r}: {error}") from error

        result = cls(
            expression=expression,
            minutes=tuple(parsed.minute),
            hours=tuple(parsed.hour),
            days=tuple(parsed.dom),
            months=tuple(parsed.month),
            weekdays=tuple(sorted({day % 7 for day in parsed.dow})),
            days_restricted=not raw_fields[2].startswith("*"),
            weekdays_restricted=not raw_fields[4].startswith("*"),
        )
        result._check_can_fire()
        return result

    def __str__(self) -> str:
        return self.expression

    def matches(self, wall: datetime) -> bool:
        """Whether the wall-clock time ``wall`` (naive, in the schedule's zone) is a fire time.

        Only the minute matters; seconds are ignored, and so is any tzinfo: the fields are read
        as they are.
        """
        return wall.minute in self.minutes and wall.hour in self.hours and self._day_matches(wall)

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.weekday() + 1) % 7 in self.weekdays  # weekday(): Monday is 0
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays  # Vixie cron: either restriction suffices
        return in_days and in_weekdays

    def _check_can_fire(self) -> None:
        # With OR semantics the weekday restriction always finds days. Otherwise the day of
        # month must exist in one of the months; every such date then falls on every weekday
        # some year (29 February within 40 years), so this is the only way never to fire.
        if self.days_restricted and self.weekdays_restricted:
            return
        if not any(day <= _DAYS_IN_MONTH_AT_MOST[month - 1] for month in self.months for day in self.days):
            raise CronError(
                f"cron expression {self.expression!r} never fires: no month in the month field "
                "has a day allowed by the day-of-month field"
            )


def cron(expression: str) -> Cron:
    """periodiq's spelling: ``@dramatiq.actor(periodic=cron("0 2 * * *"))``."""
    return Cron.parse(expression)


def as_cron(value: Cron | str | periodiq.CronSpec) -> Cron:
    """A `Cron` from a `Cron`, an expression, or a periodiq ``CronSpec`` (read from its text,
    so an actor declared with ``periodiq.cron`` still gets the corrected semantics)."""
    if isinstance(value, Cron):
        return value
    if isinstance(value, (str, periodiq.CronSpec)):
        return Cron.parse(str(value))
    raise TypeError(f"expected a cron expression or Cron, got {value!r}")


def validate_zone(zone: str | ZoneInfo) -> ZoneInfo:
    """The `ZoneInfo` for an IANA zone name; `CronError` naming the zone when unknown."""
    if isinstance(zone, ZoneInfo):
        return zone
    if not isinstance(zone, str) or not zone.strip():
        raise CronError(f"a time zone must be an IANA name such as 'UTC' or 'Europe/Berlin', got {zone!r}")
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ZoneInfo raises ValueError for malformed keys and OSError for paths like "Europe".
        raise CronError(
            f"unknown time zone {zone!r}: expected an IANA name such as 'UTC', 'Europe/Berlin' "
            "or 'America/New_York' (names are case-sensitive)"
        ) from None


def next_fire_time(cron: Cron, after: datetime, zone: str = "UTC") -> datetime:
    """The first fire instant strictly after ``after`` (aware, any zone), as an aware UTC datetime."""
    return next(_fire_times(as_cron(cron), after, zone))


def next_fire_times(cron: Cron, after: datetime, zone: str = "UTC", count: int = 3) -> list[datetime]:
    """The next ``count`` fire instants strictly after ``after``, ascending, aware UTC."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    return list(islice(_fire_times(as_cron(cron), after, zone), count))


def fire_times_between(
    cron: Cron, start: datetime, end: datetime, zone: str = "UTC", limit: int = 1000
) -> list[datetime]:
    """The fire instants in ``(start, end]``, ascending, aware UTC -- the ticks a scheduler that
    was down from ``start`` to ``end`` missed.

    When more than ``limit`` fall in the window, the LATEST ``limit`` are returned: misfire
    handling wants the most recent ones, and the bound keeps a long outage of a minutely job
    from building a huge list. The time taken grows with the number of fires in the window.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    end_utc = _as_utc(end, "end")
    if end_utc <= _as_utc(start, "start"):
        return []
    latest: deque[datetime] = deque(maxlen=limit)
    for instant in _fire_times(as_cron(cron), start, zone):
        if instant > end_utc:
            break
        latest.append(instant)
    return list(latest)


def _fire_times(cron: Cron, after: datetime, zone: str | ZoneInfo) -> Iterator[datetime]:
    """Every fire instant strictly after ``after``, ascending and unique (an endless generator).

    Fire instants come from walking the matching wall-clock minutes in order and converting
    each with fold=0. That conversion is monotonic except for wall times in a spring-forward
    gap, which land up to one gap later (02:30 -> 03:30) and so after real wall times that
    follow them (03:15). Two consequences shape the loop:

    * the walk starts one gap early, so a gap time whose shifted instant lies after ``after``
      is not missed (asked at 03:10 CEST, a 02:30 job still fires at 03:30 that day);
    * an instant is held back until the walk has passed its own wall-clock reading; no later
      wall time can convert to an earlier instant after that, so it is safe to yield.
    """
    tz = validate_zone(zone)
    after_utc = _as_utc(after, "after")
    wall = _first_wall_to_consider(after_utc, tz)
    give_up_after_year = wall.year + MAX_SEARCH_YEARS
    pending: list[tuple[datetime, datetime]] = []  # heap of (instant, its wall-clock reading)
    last_yielded = None
    while True:
        try:
            wall = _next_matching_wall(cron, wall, give_up_after_year)
        except _GaveUp:
            while pending:
                instant, _ = heapq.heappop(pending)
                if instant != last_yielded:
                    last_yielded = instant
                    yield instant
            raise CronError(
                f"cron expression {cron.expression!r} never fires in {MAX_SEARCH_YEARS} years"
            ) from None
        while pending and pending[0][1] < wall:
            instant, reading = heapq.heappop(pending)
            if instant != last_yielded:  # a gap time and a real time can share an instant
                last_yielded = instant
                give_up_after_year = reading.year + MAX_SEARCH_YEARS
                yield instant
        instant = wall.replace(tzinfo=tz).astimezone(timezone.utc)  # fold=0: see module docstring
        if instant > after_utc:
            heapq.heappush(pending, (instant, instant.astimezone(tz).replace(tzinfo=None)))
        wall += _ONE_MINUTE


def _first_wall_to_consider(after_utc: datetime, tz: ZoneInfo) -> datetime:
    # A wall time in a spring-forward gap converts with the offset in force before the gap,
    # so the earliest wall time that can convert to an instant after `after` is `after` read
    # with the lowest offset of the preceding day (gaps are at most a day: Samoa skipped
    # 30 December 2011). Sampled hourly, which finds every real-world transition's old offset.
    lowest_offset = min(
        (after_utc - timedelta(hours=hours)).astimezone(tz).utcoffset() for hours in range(26)
    )
    return (after_utc + lowest_offset).replace(tzinfo=None, second=0, microsecond=0)


class _GaveUp(Exception):
    pass


def _next_matching_wall(cron: Cron, wall: datetime, give_up_after_year: int) -> datetime:
    """The first wall-clock minute at or after ``wall`` (naive, whole minute) that ``cron``
    matches. Skips by field -- whole months, days, hours -- so sparse schedules such as
    29 February cost a few dozen steps a year, not half a million minutes."""
    last_year = min(give_up_after_year, datetime.max.year - 1)
    while True:
        if wall.year > last_year:
            raise _GaveUp
        if wall.month not in cron.months:
            later = bisect_right(cron.months, wall.month)
            if later < len(cron.months):
                wall = datetime(wall.year, cron.months[later], 1)
            else:
                wall = datetime(wall.year + 1, cron.months[0], 1)
            continue
        if not cron._day_matches(wall):
            wall = datetime(wall.year, wall.month, wall.day) + timedelta(days=1)
            continue
        if wall.hour not in cron.hours:
            later = bisect_right(cron.hours, wall.hour)
            if later < len(cron.hours):
                wall = wall.replace(hour=cron.hours[later], minute=0)
            else:
                wall = datetime(wall.year, wall.month, wall.day) + timedelta(days=1)
            continue
        if wall.minute not in cron.minutes:
            later = bisect_right(cron.minutes, wall.minute)
            if later < len(cron.minutes):
                wall = wall.replace(minute=cron.minutes[later])
            else:
                # Back to minute 0 of the next hour: periodiq's bug was keeping the minute here.
                wall = wall.replace(minute=0) + timedelta(hours=1)
            continue
        return wall


def _as_utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive time is ambiguous across zones and DST; refuse rather than guess.
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(timezone.utc)


def _normalise_field(expression: str, spec: _Field, text: str) -> str:
    """Validate one field and rewrite it as plain numbers that periodiq's parser reads right
    (names to numbers, ``N/S`` to ``N-max/S``); periodiq itself does no range checking."""

    def fail(problem: str) -> CronError:
        return CronError(f"invalid cron expression {expression!r}: {spec.name} field {text!r}: {problem}")

    def number(token: str, *, ends_range: bool = False) -> int:
        if token.isdigit():
            value = int(token)
        elif spec.names is None:
            raise fail(f"{token!r} is not a number (names are allowed in month and day-of-week only)")
        elif token not in spec.names:
            raise fail(f"unknown name {token!r}; expected one of {', '.join(spec.names)}")
        elif spec.name == "day-of-week" and token == "sun" and ends_range:
            value = 7  # so that "fri-sun" is Friday to Sunday, not a reversed range
        else:
            value = spec.names[token]
        if not spec.low <= value <= spec.high:
            raise fail(f"{value} is out of range {spec.low}-{spec.high}")
        return value

    items = []
    for item in text.split(","):
        if not item:
            raise fail("empty list item")
        match = _ITEM.fullmatch(item)
        if match is None:
            raise fail(f"cannot read {item!r}; expected *, N or N-M, optionally with /STEP, comma-separated")
        step = match["step"]
        if step is not None and int(step) == 0:
            raise fail(f"step in {item!r} must be at least 1")
        if match["star"]:
            start, end = spec.low, spec.high
        else:
            start = number(match["start"])
            if match["end"] is not None:
                end = number(match["end"], ends_range=True)
            elif step is not None:
                end = spec.high  # "N/S" is "N-max/S"
            else:
                end = start
            if start > end:
                hint = " (Sunday may be written 7)" if spec.name == "day-of-week" else ""
                raise fail(f"range {item!r} is reversed{hint}")
        items.append(f"{start}-{end}" + (f"/{int(step)}" if step is not None else ""))
    return ",".join(items)
