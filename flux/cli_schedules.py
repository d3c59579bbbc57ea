"""`flux schedules list|add|remove`: the schedules stored in a storage (SPEC §10)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import serialization as ser
from .engine import FluxEngine
from .logger import FluxSilentLogger
from .schedules import CATCH_UP, Schedule
from .storage import WorkflowStorage, open_storage
from .text import printable, printable_json

if TYPE_CHECKING:
    from .builder import Workflow


def add_parser(sub: Any, storage_help: str) -> None:
    schedules = sub.add_parser("schedules", help="list, add and remove stored schedules")
    actions = schedules.add_subparsers(dest="action")

    def add_storage(p: argparse.ArgumentParser) -> None:
        p.add_argument("--storage", default=os.environ.get("FLUX_STORAGE"), help=storage_help)

    listing = actions.add_parser("list", help="list the schedules, by id")
    add_storage(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    add = actions.add_parser("add", help="store a schedule (the same one again changes nothing)")
    add_storage(add)
    add.add_argument("--workflow", required=True, help="the definition, as module:attribute")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="a cron expression: '0 2 * * *', '@daily', ...")
    when.add_argument("--every", help="seconds between slots (a whole number >= 1)")
    add.add_argument("--input", default="null", help="the input of each run, as JSON")
    add.add_argument("--id", help="the schedule's id (default: the workflow's name)")
    add.add_argument("--timezone", default="UTC", help="IANA timezone of the cron expression")
    add.add_argument("--catch-up", default="latest", choices=CATCH_UP, help="what missed slots do")

    remove = actions.add_parser("remove", help="remove a schedule (the runs it started stay)")
    add_storage(remove)
    remove.add_argument("id")


async def run(
    args: argparse.Namespace,
    *,
    load_workflow: Callable[[str], Workflow[Any]],
    open_existing: Callable[[str], WorkflowStorage],
    usage_error: type[Exception],
) -> int:
    """`flux schedules ...`; `flux.cli` passes its own helpers (`python -m flux.cli` runs it
    as `__main__`, so importing them from `flux.cli` would make a second copy)."""
    CLIError = usage_error

    if not args.storage:
        raise CLIError("no storage: pass --storage sqlite:///path.db (or set FLUX_STORAGE)")
    if args.action == "add":
        flow = load_workflow(args.workflow)
        every = None
        if args.every is not None:
            try:
                every = float(args.every)
            except ValueError:
                raise CLIError(f"--every {args.every!r}: expected a number of seconds") from None
            if every.is_integer():
                every = int(every)
        try:
            value = json.loads(args.input)
        except ValueError as exc:  # JSONDecodeError, or an int of more than 4,300 digits
            raise CLIError(f"--input is not valid JSON: {exc}") from None
        storage = open_storage(args.storage)  # the workers' database may not exist yet
    else:
        storage = open_existing(args.storage)
    engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
    try:
        if args.action == "add":
            made = await engine.schedule(
                flow, cron=args.cron, every=every, input=value, id=args.id, timezone=args.timezone,
                catch_up=args.catch_up,
            )  # fmt: skip
            _print_table([made])
        elif args.action == "remove":
            if not await engine.unschedule(args.id):
                raise CLIError(f"no schedule with id {printable(repr(args.id))}")
            print(printable(f"removed schedule '{args.id}'"))
        elif args.json:
            for s in await engine.schedules():
                print(printable_json(json.dumps(_summary(s), ensure_ascii=False)))
        else:
            _print_table(await engine.schedules())
    finally:
        await engine.close()
    return 0


def _summary(s: Schedule) -> dict[str, Any]:
    return {
        "id": s.id,
        "workflow": s.workflow,
        "cron": s.cron,
        "every": s.every,
        "timezone": s.timezone,
        "catch_up": s.catch_up,
        "input": ser.to_jsonable(s.input),
        "next_due": s.next_due.isoformat(),
        "last_slot": s.last_slot.isoformat() if s.last_slot else None,
    }


def _print_table(schedules: list[Schedule]) -> None:
    if not schedules:
        print("no schedules")
        return
    rows = [("ID", "WORKFLOW", "WHEN", "TIMEZONE", "CATCH-UP", "NEXT", "LAST", "INPUT")]
    for s in schedules:
        when = s.cron if s.cron is not None else f"every {s.every}s"
        rows.append(
            (
                printable(s.id),
                printable(s.workflow),
                when,
                s.timezone,
                s.catch_up,
                s.next_due.strftime("%Y-%m-%d %H:%M:%SZ"),
                s.last_slot.strftime("%Y-%m-%d %H:%M:%SZ") if s.last_slot else "",
                printable_json(json.dumps(ser.to_jsonable(s.input), ensure_ascii=False))[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    sys.stdout.flush()
