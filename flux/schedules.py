"""Schedules (SPEC §10): their stored form, the checks of a definition, and the pure core
that decides which slots to start. No I/O here: `flux.scheduler` does what this decides.

A schedule stores `next_due`, the first slot not yet handled. A worker that finds
`next_due <= now` starts the runs of the due slots and moves `next_due` past `now`.
A slot is *on time* when a worker handles it less than `min(60 s, the time to the next
slot)` after it: it always runs. A slot that no worker handled on time (they were all
down, or all busy) is *missed*, and `catch_up` says what becomes of the missed slots:

- `"latest"`: the most recent missed slot runs, the older ones are skipped;
- `"all"`: every missed slot runs, oldest first, at most the 1,000 most recent;
- `"none"`: no missed slot runs.

The run of a slot has the id `"<schedule id>@<slot, ISO 8601 UTC>"`, created only if it
does not exist: any number of workers handling one slot start one run.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .cron import Every, Rule, load_zone, parse_cron, shown
from .errors import ScheduleError
from .text import printable

__all__ = ["CATCH_UP", "MAX_CATCH_UP", "Firing", "Schedule", "ScheduleRecord", "plan_firing", "slot_id"]

CATCH_UP = ("latest", "all", "none")
#: The longest `every=`: ten years of seconds.
MAX_EVERY = 10 * 365 * 86400 + 2 * 86400
#: At most this many missed slots run when `catch_up="all"`.
MAX_CATCH_UP = 1000
#: A slot handled within this many seconds (or before the next slot, if sooner) is on time.
ON_TIME = 60
#: A run id holds at most 255 characters; the slot suffix takes 21.
MAX_ID = 255 - len("@2026-12-02T01:00:00Z")
#: Due slots counted one by one before a long gap is searched from its end instead.
_WALK = 10_000


@dataclass
class ScheduleRecord:
    """A schedule as storages keep it: plain fields, the input as JSON text."""

    id: str
    workflow: str
    cron: str | None
    every: int | None
    timezone: str
    catch_up: str
    input_json: str
    #: Epoch second of the first slot not yet handled.
    next_due: int
    #: Epoch second of the latest slot whose run was started, if any.
    last_slot: int | None = None
    created_at: float = 0.0

    def definition(self) -> tuple[Any, ...]:
        """What makes two schedules with one id the same schedule."""
        return (
            self.workflow,
            # names and macros are read whatever their case, fields whatever the spaces between
            None if self.cron is None else " ".join(self.cron.split()).upper(),
            self.every,
            self.timezone,
            self.catch_up,
            _canonical(self.input_json),
        )

    def describe(self) -> str:
        when = f"cron={self.cron!r}" if self.cron is not None else f"every={self.every}"
        tz = f", timezone={self.timezone!r}" if self.cron is not None else ""
        shown_input = self.input_json if len(self.input_json) <= 200 else self.input_json[:197] + "..."
        return f"workflow '{self.workflow}', {when}{tz}, catch_up={self.catch_up!r}, input={shown_input}"

    def rule(self) -> Rule:
        return rule_of(self.cron, self.every, self.timezone)

    def copy(self) -> ScheduleRecord:
        clone = object.__new__(ScheduleRecord)
        clone.__dict__.update(self.__dict__)
        return clone


def _canonical(text: str) -> str:
    """JSON text with its objects' keys sorted: one input, whatever order its keys came in
    (numbers and booleans keep their spelling: `1`, `1.0` and `true` stay apart)."""
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError:  # a row written by hand: compared as it is
        return text


@dataclass(frozen=True)
class Schedule:
    """A stored schedule, as `engine.schedules()` lists it."""

    id: str
    workflow: str
    cron: str | None
    every: int | None
    timezone: str
    catch_up: str
    input: Any
    #: The next slot a worker will start a run for.
    next_due: datetime
    #: The latest slot whose run was started, if any.
    last_slot: datetime | None
    created_at: datetime


def rule_of(cron: str | None, every: int | None, zone: str) -> Rule:
    if cron is not None:
        return parse_cron(cron, zone)
    assert every is not None
    return Every(every)


def check_definition(
    schedule_id: str, cron: object, every: object, zone: object, catch_up: object
) -> tuple[str | None, int | None, str]:
    """The normalised (cron, every, timezone), or a `ScheduleError` naming the schedule."""
    where = f"schedule '{printable(schedule_id)}'"
    if (cron is None) == (every is None):
        raise ScheduleError(f"{where}: give exactly one of cron= and every=")
    if catch_up not in CATCH_UP:
        raise ScheduleError(
            f"{where}: catch_up={shown(catch_up)}; use one of {', '.join(map(repr, CATCH_UP))}"
        )
    try:
        load_zone(zone)
    except ScheduleError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    assert isinstance(zone, str)
    if cron is not None:
        try:
            parsed = parse_cron(cron, zone)
        except ScheduleError as exc:
            raise ScheduleError(f"{where}: {exc}") from None
        return parsed.text, None, zone
    seconds: int | None = None
    if isinstance(every, int) and not isinstance(every, bool):
        seconds = every
    elif isinstance(every, float) and math.isfinite(every) and every.is_integer():
        seconds = int(every)
    if seconds is None or not 1 <= seconds <= MAX_EVERY:
        raise ScheduleError(
            f"{where}: every={shown(every)}; must be a whole number of seconds "
            f"from 1 to {MAX_EVERY} (10 years)"
        )
    if zone != "UTC":
        raise ScheduleError(
            f"{where}: timezone={zone!r} applies to cron= only; every= slots are counted in UTC"
        )
    return None, seconds, zone


@dataclass(frozen=True)
class Firing:
    """What a worker does with a due schedule: start the runs of `start` (oldest first),
    then store `next_due`. `skipped` missed slots do not run (`catch_up`); it is a lower
    bound (`exact` False) when the gap held more than 10,000 slots."""

    start: tuple[int, ...]
    skipped: int
    next_due: int
    exact: bool = True


def plan_firing(rule: Rule, catch_up: str, next_due: int, now: float) -> Firing | None:
    """Which slots of a schedule due since `next_due` to start at `now` (None: not due)."""
    if next_due > now:
        return None
    wanted = {"latest": 2, "all": MAX_CATCH_UP + 1, "none": 1}[catch_up]
    slots, counted, exact = _last_slots(rule, next_due, math.floor(now), wanted)
    if not slots:  # `next_due` is no slot of the rule (a row changed by hand): skip to the next
        return Firing(start=(), skipped=0, next_due=rule.next_after(math.floor(now)))
    last = slots[-1]
    after = rule.next_after(last)
    on_time = now < last + min(ON_TIME, after - last)
    missed = slots if not on_time else slots[:-1]
    if catch_up == "latest":
        keep = missed[-1:]
    elif catch_up == "all":
        keep = missed[-MAX_CATCH_UP:]
    else:
        keep = []
    start = (*keep, last) if on_time else tuple(keep)
    return Firing(start=tuple(start), skipped=counted - len(start), next_due=after, exact=exact)


def _last_slots(rule: Rule, first: int, now: int, k: int) -> tuple[list[int], int, bool]:
    """The last `k` slots in [first, now] (ascending), how many slots that range holds, and
    whether that count is exact. Up to `_WALK` slots are walked one by one (and counted);
    past that, a window grows back from `now`, so a long gap is never walked."""
    last: deque[int] = deque(maxlen=k)
    count = 0
    t = rule.next_after(first - 1)
    while t <= now and count < _WALK:
        last.append(t)
        count += 1
        t = rule.next_after(t)
    if t > now:
        return list(last), count, True
    span = max(rule.next_after(first) - first, 1) * (k + 1)
    while True:
        start = max(first, now - span)
        slots: list[int] = []
        t = rule.next_after(start - 1)
        while t <= now:
            slots.append(t)
            t = rule.next_after(t)
        if len(slots) >= k or start == first:
            return slots[-k:], max(len(slots), _WALK), False
        span *= 4


def slot_iso(slot: int) -> str:
    return datetime.fromtimestamp(slot, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_id(schedule_id: str, slot: int) -> str:
    """The id of the run of a slot: `nightly@2026-12-02T01:00:00Z`."""
    return f"{schedule_id}@{slot_iso(slot)}"
