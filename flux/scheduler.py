"""What `engine.schedule`, `unschedule`, `schedules` and the work loop's schedule tick do
(SPEC §10): a thin layer over the storage. `flux.schedules.plan_firing` decides which slots
run; this starts their runs and moves the schedule on.

A worker's tick asks the storage for the schedules of its workflows that are due (one
indexed query). For each, it creates the `pending` run of every slot to start, with the id
`"<schedule id>@<slot>"` (an id that exists is left as it is: another worker started that
slot), then moves `next_due` on with a compare-and-set. A worker that dies between the two
leaves `next_due` where it was: the next tick, here or elsewhere, finds the same slots and
the same run ids, so nothing runs twice and nothing is lost.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from . import serialization as ser
from .cron import shown
from .errors import (
    FluxError,
    InputValidationError,
    RunStateError,
    ScheduleConflictError,
    ScheduleError,
    SerializationError,
)
from .history import as_utc
from .schedules import (
    MAX_ID,
    Schedule,
    ScheduleRecord,
    check_definition,
    plan_firing,
    rule_of,
    slot_id,
    slot_iso,
)
from .status import RunStatus
from .text import printable

if TYPE_CHECKING:
    from .builder import Workflow
    from .engine import FluxEngine


async def add(
    engine: FluxEngine,
    flow: Workflow[Any],
    *,
    cron: str | None,
    every: float | None,
    input: Any,
    id: str | None,
    timezone: str,
    catch_up: str,
) -> Schedule:
    engine._check_flow(flow)
    schedule_id = check_id(flow.name if id is None else id)
    cron_text, seconds, zone = check_definition(schedule_id, cron, every, timezone, catch_up)
    try:
        _, input_json = engine._prepare_input(flow, input)
    except (InputValidationError, SerializationError) as exc:
        raise ScheduleError(f"schedule '{printable(schedule_id)}': its input is not usable: {exc}") from exc
    now = engine.clock.now()
    record = ScheduleRecord(
        id=schedule_id, workflow=flow.name, cron=cron_text, every=seconds, timezone=zone,
        catch_up=catch_up, input_json=input_json,
        next_due=rule_of(cron_text, seconds, zone).next_after(math.floor(now)), created_at=now,
    )  # fmt: skip
    stored = await engine.storage.put_schedule(record)
    if stored is not None and stored.definition() != record.definition():
        raise ScheduleConflictError(
            f"schedule '{printable(schedule_id)}' exists with another definition: "
            f"stored {printable(stored.describe())}; given {printable(record.describe())}. "
            "Unschedule it first, or use another id"
        )
    return public(stored or record)


async def remove(engine: FluxEngine, schedule_id: str) -> bool:
    return await engine.storage.delete_schedule(check_id(schedule_id))


async def listing(engine: FluxEngine) -> list[Schedule]:
    return [public(s) for s in await engine.storage.list_schedules()]


async def fire(engine: FluxEngine, now: float) -> int:
    """Start the runs of the due slots of the schedules of the workflows `engine` knows."""
    known = engine._known
    if not known:
        return 0
    started = 0
    for schedule in await engine.storage.due_schedules(list(known), now):
        where = f"schedule '{printable(schedule.id)}'"
        try:
            firing = plan_firing(schedule.rule(), schedule.catch_up, schedule.next_due, now)
        except ScheduleError as exc:  # a row written by hand, or by a newer Flux
            engine.logger.error(f"{where}: cannot be read: {exc}")
            continue
        if firing is None:
            continue
        flow = known[schedule.workflow]
        for slot in firing.start:
            try:
                started += await _start_slot(engine, flow, schedule, slot)
            except FluxError as exc:  # the slot's id is taken by another run: say so, go on
                engine.logger.error(f"{where}: the run of slot {slot_iso(slot)} not started: {exc}")
        last = firing.start[-1] if firing.start else None
        moved = await engine.storage.advance_schedule(schedule.id, schedule.next_due, firing.next_due, last)
        if moved and firing.skipped:  # said once, by the worker that moved the schedule on
            engine.logger.warn(
                f"{where}: {'' if firing.exact else 'at least '}{firing.skipped} missed slot(s) not run "
                f"(catch_up={schedule.catch_up!r})",
                workflow=schedule.workflow,
            )
    return started


async def next_due(engine: FluxEngine) -> float | None:
    known = list(engine._known)
    if not known:
        return None
    due = await engine.storage.next_schedule_due(known)
    return None if due is None else float(due)


async def _start_slot(engine: FluxEngine, flow: Workflow[Any], schedule: ScheduleRecord, slot: int) -> int:
    """Create the `pending` run of a slot; 1 if this call created it, 0 if it existed."""
    from .engine import _new_run  # the engine imports this module

    run_id = slot_id(schedule.id, slot)
    # Made as `engine.start` makes a run (its deadline included), with the slot it is for.
    run = _new_run(flow, run_id, schedule.input_json, RunStatus.PENDING, None, engine.clock.now())
    run.schedule = (schedule.id, slot_iso(slot))
    storage = engine.storage
    if await storage.create_run(run):
        return 1
    existing = await storage.load_run(run_id)
    if existing is not None:
        engine._check_same_run(flow, existing, schedule.input_json)
    return 0


def check_id(schedule_id: object) -> str:
    from .engine import FluxEngine

    if not isinstance(schedule_id, str):
        raise ScheduleError(f"schedule id {shown(schedule_id)}: an id must be a string")
    if len(schedule_id) > MAX_ID:
        raise ScheduleError(
            f"schedule id {schedule_id[:40]!r}... is {len(schedule_id)} characters long: the id is longer "
            f"than {MAX_ID} characters (the ids of its runs add a slot to it)"
        )
    try:
        return FluxEngine._check_id(schedule_id)
    except RunStateError as exc:
        raise ScheduleError(f"schedule id {shown(schedule_id)} names its runs, and {exc}") from None


def public(s: ScheduleRecord) -> Schedule:
    next_due, created = as_utc(s.next_due), as_utc(s.created_at)
    assert next_due is not None and created is not None
    return Schedule(
        id=s.id, workflow=s.workflow, cron=s.cron, every=s.every, timezone=s.timezone,
        catch_up=s.catch_up, input=ser.loads(s.input_json), next_due=next_due,
        last_slot=as_utc(s.last_slot), created_at=created,
    )  # fmt: skip
