"""Cron expressions and fixed intervals: when a schedule's slots fall (SPEC §10). Pure.

Five fields, `minute hour day-of-month month day-of-week`, each `*`, a number, a range
`a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to the field's end), or a list of these
(`1,15,30-35`). Months and days of the week may be names (`JAN`..`DEC`, `SUN`..`SAT`,
any case); day-of-week 0 and 7 are both Sunday. `@hourly @daily @midnight @weekly
@monthly @yearly @annually` stand for `0 * * * *`, `0 0 * * *`, `0 0 * * *`, `0 0 * * 0`,
`0 0 1 * *`, `0 0 1 1 *`, `0 0 1 1 *`.

Day-of-month and day-of-week (the rule of Vixie cron): when both are restricted (neither
field begins with `*`), a day matches if *either* does (`0 0 13 * FRI`: every 13th and
every Friday); when one begins with `*`, only the other restricts.

A slot is a local wall-clock minute in the schedule's timezone. A local time that does not
exist (spring forward) runs at the first instant that does (the end of the gap: `30 2 * * *`
in Europe/Paris runs at 03:00 on the day of the change); an ambiguous one (fall back) runs
once, at its first occurrence. `every=` slots are multiples of the interval since the Unix
epoch, in UTC, and know nothing of timezones.

`next_after` walks fields, not minutes: it skips whole months, days and hours that cannot
match, so finding a slot a year away costs a few hundred steps, not half a million.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Protocol

from .errors import ScheduleError

__all__ = ["Cron", "Every", "Rule", "load_zone", "parse_cron", "shown"]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
#: name, low, high, names (numbered from `low`)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # the most each month can have
_MAX_STEPS = 100_000  # field steps before giving up: far more than any real expression needs
_MINUTE = timedelta(minutes=1)
#: Zoneinfo files whose meaning is set per machine (its local time, its POSIX default).
_MACHINE_LOCAL = frozenset({"localtime", "posixrules"})
_UTC = timezone.utc


class Rule(Protocol):
    """When slots fall: `next_after(t)` is the first slot strictly after `t` (epoch seconds)."""

    def next_after(self, after: int) -> int: ...


@dataclass(frozen=True)
class Every:
    """A slot every `seconds`, at the multiples of it since the epoch."""

    seconds: int

    def next_after(self, after: int) -> int:
        return (after // self.seconds + 1) * self.seconds


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression, bound to a timezone."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day-of-month began with `*`
    any_weekday: bool  # day-of-week began with `*`
    zone: zoneinfo.ZoneInfo

    def day_matches(self, d: date) -> bool:
        dom = d.day in self.days
        dow = (d.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, after: int) -> int:
        wall = datetime.fromtimestamp(after, self.zone).replace(tzinfo=None, second=0, microsecond=0)
        candidate = wall + _MINUTE
        for _ in range(_MAX_STEPS):
            found = self._next_wall(candidate)
            instant = _instant(found, self.zone)
            if instant > after:
                return instant
            # a wall time of a repeated hour that already ran, or a gap that maps to `after`
            candidate = found + _MINUTE
        raise ScheduleError(f"cron '{self.text}': no slot found after {after}")  # pragma: no cover

    def _next_wall(self, start: datetime) -> datetime:
        """The first local wall time at or after `start` that the fields match."""
        day, hour, minute = start.date(), start.hour, start.minute
        for _ in range(_MAX_STEPS):
            if day.month not in self.months:
                day = _first_of_next_month(day)
                hour = minute = 0
                continue
            if not self.day_matches(day):
                day += timedelta(days=1)
                hour = minute = 0
                continue
            h = next((x for x in self.hours if x >= hour), None)
            if h is None:
                day += timedelta(days=1)
                hour = minute = 0
                continue
            m = next((x for x in self.minutes if x >= minute), None) if h == hour else self.minutes[0]
            if m is None:
                hour, minute = h + 1, 0
                if hour == 24:
                    day += timedelta(days=1)
                    hour = 0
                continue
            return datetime(day.year, day.month, day.day, h, m)
        raise ScheduleError(f"cron '{self.text}': no matching day found")  # pragma: no cover


def _first_of_next_month(d: date) -> date:
    if d.year >= 9999 and d.month == 12:
        raise ScheduleError("cron: no slot before the year 10000")
    return date(d.year + 1, 1, 1) if d.month == 12 else date(d.year, d.month + 1, 1)


def _instant(wall: datetime, zone: zoneinfo.ZoneInfo) -> int:
    """The epoch second of a local wall time: its first occurrence if it is ambiguous, the
    end of the gap if it does not exist."""
    first = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    second = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    if first == second:
        return first
    if datetime.fromtimestamp(first, zone).replace(tzinfo=None) == wall:
        return min(first, second)  # ambiguous: both exist, take the earlier
    # In a gap: fold=1 reads it with the offset after the change (an instant before it),
    # fold=0 with the offset before (an instant after). The change lies between.
    lo, hi = second, first
    after = _offset(hi, zone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, zone) == after:
            hi = mid
        else:
            lo = mid
    return hi


def _offset(instant: int, zone: zoneinfo.ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(instant, _UTC).astimezone(zone).utcoffset()


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)` for a message: escapes shown, cut to `limit`, safe for any int."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"<an int of {len(str(abs(value))) if abs(value) < 10**4000 else 'over 4000'} digits>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_zone(name: object) -> zoneinfo.ZoneInfo:
    """The timezone called `name`, or a `ScheduleError` saying it is unknown."""
    unknown = f"unknown timezone {shown(name)}: give an IANA name such as 'Europe/Paris' or 'UTC'"
    if not isinstance(name, str) or not name:
        raise ScheduleError(unknown)
    if name.rsplit("/", 1)[-1] in _MACHINE_LOCAL:
        raise ScheduleError(
            f"timezone {shown(name)} means what the machine that reads it makes of it, so workers on "
            "two machines would disagree; give an IANA name such as 'Europe/Paris' or 'UTC'"
        )
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise ScheduleError(unknown) from None


def parse_cron(text: object, zone: zoneinfo.ZoneInfo | str = "UTC") -> Cron:
    """Parse a cron expression; a `ScheduleError` names the field that is wrong."""
    if not isinstance(text, str):
        raise ScheduleError(f"a cron expression must be a string, got {shown(text)}")
    tz = load_zone(zone) if isinstance(zone, str) else zone
    expr = text.strip()
    if expr.startswith("@"):
        if expr.lower() not in _MACROS:
            raise ScheduleError(f"cron {text!r}: unknown macro (known: {', '.join(_MACROS)})")
        expr = _MACROS[expr.lower()]
    parts = expr.split()
    if len(parts) != 5:
        raise ScheduleError(
            f"cron {text!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or a macro such as @daily"
        )
    try:
        sets = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    except ScheduleError as exc:
        raise ScheduleError(f"cron {text!r}: {exc}") from None
    weekdays = frozenset(d % 7 for d in sets[4])
    cron = Cron(
        text=" ".join(parts), minutes=tuple(sorted(sets[0])), hours=tuple(sorted(sets[1])),
        days=frozenset(sets[2]), months=frozenset(sets[3]), weekdays=weekdays,
        any_day=parts[2].startswith("*"), any_weekday=parts[4].startswith("*"), zone=tz,
    )  # fmt: skip
    if cron.any_weekday and not any(min(cron.days) <= _MONTH_DAYS[m - 1] for m in cron.months):
        raise ScheduleError(
            f"cron {text!r}: day-of-month field '{parts[2]}' never occurs in month field '{parts[3]}'"
        )
    return cron


def _field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_item(item, text, name, low, high, names))
    return values


def _item(item: str, whole: str, name: str, low: int, high: int, names: tuple[str, ...]) -> range:
    where = f"{name} field {whole!r}"
    if not item:
        raise ScheduleError(f"{where}: empty list item")
    body, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdecimal() or not step_text.isascii():
            raise ScheduleError(f"{where}: step {step_text!r} is not a number")
        step = int(step_text) if len(step_text) < 20 else high + 1  # int() refuses 4,300+ digits
        if step < 1 or step > high:
            text = step_text if len(step_text) <= 24 else step_text[:20] + "..."
            raise ScheduleError(f"{where}: step {text} out of range 1-{high}")
    if body == "*":
        start, end = low, high
    elif "-" in body:
        a, _, b = body.partition("-")
        start, end = _value(a, where, low, high, names), _value(b, where, low, high, names)
        if start > end:
            raise ScheduleError(f"{where}: range {body!r} starts after it ends")
    else:
        start = _value(body, where, low, high, names)
        end = high if slash else start
    return range(start, end + 1, step)


def _value(text: str, where: str, low: int, high: int, names: tuple[str, ...]) -> int:
    upper = text.upper()
    if names and upper in names:
        return names.index(upper) + (1 if names is _MONTHS else 0)
    if not text.isdecimal() or not text.isascii():
        hint = f" (or a name: {names[0]}..{names[-1]})" if names else ""
        raise ScheduleError(f"{where}: {text!r} is not a number{hint}")
    value = int(text) if len(text) < 20 else high + 1
    if not low <= value <= high:
        shown = text if len(text) <= 24 else text[:20] + "..."
        field_name = where.split(" field ")[0]
        raise ScheduleError(f"{field_name} field '{shown}' out of range {low}-{high}")
    return value
