"""The `flux` command: `flux dev` (the dashboard), `flux worker`, `flux runs ...` (stored runs)
and `flux schedules ...` (stored schedules, in `flux.cli_schedules`)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import glob
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from . import __version__, cli_graph, cli_schedules
from . import serialization as ser
from .builder import Workflow
from .engine import FluxEngine
from .errors import FluxError
from .events import action_event, timestamp_ms
from .logger import FluxSilentLogger
from .records import RunRecord
from .result import FluxResult
from .retention import parse_age
from .status import RunStatus
from .text import printable, printable_json


class CLIError(Exception):
    """A user mistake on the command line: printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None or (args.command in ("runs", "schedules") and args.action is None):
        (parser if args.command is None else _subparser(parser, args.command)).print_help()
        return 0
    try:
        if args.command == "dev":
            return _dev(args)
        if args.command == "worker":
            return _worker(args)
        if args.command == "graph":
            return cli_graph.run(args, load_workflow=load_workflow, usage_error=CLIError)
        if args.command == "schedules":
            return asyncio.run(
                cli_schedules.run(
                    args, load_workflow=load_workflow, open_existing=_open_storage, usage_error=CLIError
                )
            )
        return asyncio.run(_runs(args))
    except (CLIError, FluxError) as exc:
        print(f"flux: error: {printable(str(exc), multiline=True)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `flux runs list | head`
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flux", description="Flux workflow engine")
    parser.add_argument("--version", action="version", version=f"flux {__version__} (gravito-flux)")
    sub = parser.add_subparsers(dest="command", metavar="{dev,worker,runs,schedules,graph}")

    dev = sub.add_parser("dev", help="serve the live dashboard of a trace, or of stored runs")
    dev.add_argument(
        "--trace",
        action="append",
        default=None,
        metavar="PATH",
        help=f"NDJSON trace file to tail (default {DEFAULT_TRACE}); with --storage, repeatable "
        "or a glob ('.flux/*.ndjson'): the traces of many processes",
    )
    dev.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="show the runs stored there, live: sqlite:///path.db or postgresql://...",
    )
    dev.add_argument(
        "--workflows",
        action="append",
        default=[],
        metavar="MODULE[,MODULE]",
        help="modules whose workflow definitions the dashboard's actions may run (or module:attribute)",
    )
    dev.add_argument("--read-only", action="store_true", help="offer no action: only show")
    dev.add_argument(
        "--stuck-after",
        type=_duration,
        default=24 * 3600.0,
        metavar="SPAN",
        help="a run waiting for a signal (or overdue) longer than this is listed as stuck: "
        "90s, 30m, 12h, 2d (default 24h)",
    )
    dev.add_argument("--port", type=int, default=4280)
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dev.add_argument("--demo", action="store_true", help="run the bundled example workflows first")
    dev.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    dev.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this Host name (repeatable; *.example.com for a domain)",
    )

    worker = sub.add_parser("worker", help="claim and execute waiting runs from a shared storage")
    worker.add_argument("workflows", nargs="+", help="the definitions, as module:attribute")
    worker.add_argument(
        "--storage",
        default=os.environ.get("FLUX_STORAGE"),
        help="storage URL: postgresql://... or sqlite:///path.db (or FLUX_STORAGE)",
    )
    worker.add_argument("--concurrency", type=int, default=1, help="workers in this process (threads)")
    worker.add_argument("--burst", action="store_true", help="exit when no run is waiting")
    worker.add_argument("--poll", type=float, default=0.2, help="seconds between looks when idle")
    worker.add_argument("--grace", type=float, default=30.0, help="seconds to finish runs on SIGTERM")
    worker.add_argument("--lease", type=float, default=30.0, help="lease seconds (heartbeat: a third)")
    worker.add_argument("--trace", default=os.environ.get("FLUX_TRACE"), help="append trace events here")

    runs = sub.add_parser("runs", help="look at and act on stored runs")
    actions = runs.add_subparsers(dest="action")
    storage_help = "storage URL: sqlite:///path.db, postgresql://... (or FLUX_STORAGE)"

    def add_storage(p: argparse.ArgumentParser) -> None:
        p.add_argument("--storage", default=os.environ.get("FLUX_STORAGE"), help=storage_help)

    listing = actions.add_parser("list", help="list runs, newest first")
    add_storage(listing)
    listing.add_argument("--name", help="only runs of this workflow")
    listing.add_argument("--status", action="append", choices=[s.value for s in RunStatus])
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    show = actions.add_parser("show", help="show one run and its steps")
    add_storage(show)
    show.add_argument("id")
    show.add_argument("--json", action="store_true")

    retry = actions.add_parser("retry", help="run a step again, and everything after it")
    add_storage(retry)
    retry.add_argument("id")
    retry.add_argument("step")
    retry.add_argument("--workflow", required=True, help="the definition, as module:attribute")
    retry.add_argument("--trace", default=os.environ.get("FLUX_TRACE"), help="append trace events here")

    cancel = actions.add_parser("cancel", help="cancel a run (its completed steps are compensated)")
    add_storage(cancel)
    cancel.add_argument("id")
    cancel.add_argument("--reason", default="cancelled from the command line")
    cancel.add_argument("--workflow", help="the definition, as module:attribute (to compensate)")
    cancel.add_argument("--trace", default=os.environ.get("FLUX_TRACE"), help="append trace events here")
    signal = actions.add_parser("signal", help="deliver a signal to a suspended run")
    add_storage(signal)
    signal.add_argument("id")
    signal.add_argument("signal")
    signal.add_argument("--payload", default="null", help="the payload, as JSON")
    signal.add_argument("--workflow", required=True, help="the definition, as module:attribute")
    signal.add_argument("--trace", default=os.environ.get("FLUX_TRACE"), help="append trace events here")
    cli_schedules.add_parser(sub, storage_help)
    cli_graph.add_parser(sub)
    prune = actions.add_parser("prune", help="delete old runs (default: finished ones) and print how many")
    add_storage(prune)
    prune.add_argument(
        "--older-than", required=True, help="age since the last change: 30d, 12h, 90m, 45s, 2w"
    )
    prune.add_argument("--status", action="append", choices=[s.value for s in RunStatus],
                       help="only runs in this state (repeatable; default: the finished states)")  # fmt: skip
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise LookupError(name)


def dashboard(module: str) -> ModuleType:
    """A module of the dashboard: `flux._dev.<module>` in an installed wheel, else the checkout's
    `viewer.<module>` (the repository keeps the dashboard in `viewer/` at its top level)."""
    try:
        return importlib.import_module(f"flux._dev.{module}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("flux._dev", f"flux._dev.{module}"):
            raise
    return importlib.import_module(f"viewer.{module}")


def _open_storage(url: str) -> Any:
    from .storage import open_storage

    try:
        return open_storage(url, create=False)
    except ImportError as exc:  # psycopg missing: the storage says which extra to install
        raise CLIError(f"--storage {url.partition('://')[0]}://...: {exc}") from None


DEFAULT_TRACE = "./.flux/trace.ndjson"


def _duration(text: str) -> float:
    """`--stuck-after`: a time span as `flux runs prune --older-than` reads one (`parse_age`)."""
    try:
        value = parse_age(text)
    except FluxError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time span such as 90s, 30m, 12h or 2d") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a time span must be positive")
    return value


def _traces(given: list[str] | None, storage: str | None) -> list[Path]:
    """The trace files: each `--trace`, a glob expanded (sorted); by default the default one
    (with --storage, only if it exists: the storage alone is enough)."""
    if not given:
        default = Path(DEFAULT_TRACE)
        return [default] if storage is None or default.exists() else []
    paths: list[Path] = []
    for spec in given:
        if any(c in spec for c in "*?["):
            matched = sorted(glob.glob(spec))
            if not matched:
                raise CLIError(f"--trace {spec!r}: the pattern matches no file")
            paths.extend(Path(m) for m in matched)
        else:
            paths.append(Path(spec))
    unique = list(dict.fromkeys(paths))
    if storage is None and len(unique) > 1:
        raise CLIError(
            "several trace files (--trace given more than once, or a glob) need --storage: "
            "the stored runs are what joins them"
        )
    return unique


def load_workflows(specs: list[str]) -> dict[str, Workflow[Any]]:
    """`--workflows`: each module's workflow definitions (or one `module:attribute`), by name."""
    found: dict[str, Workflow[Any]] = {}
    for spec in (part.strip() for given in specs for part in given.split(",")):
        if not spec:
            continue
        if ":" in spec:
            flows = [load_workflow(spec)]
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(spec)
            except ImportError as exc:
                raise CLIError(f"--workflows {spec!r}: cannot import it: {exc}") from None
            except Exception as exc:  # the module's own top-level code failed
                raise CLIError(
                    f"--workflows {spec!r}: importing it raised {type(exc).__name__}: {exc}"
                ) from None
            flows = [v for v in vars(module).values() if isinstance(v, Workflow)]
            if not flows:
                raise CLIError(f"--workflows {spec!r}: the module defines no workflow (create_workflow())")
        for flow in flows:
            other = found.get(flow.name)
            if other is not None and other is not flow:
                raise CLIError(f"--workflows: two definitions are named {flow.name!r} ({spec})")
            found[flow.name] = flow
    return found


def _dev(args: argparse.Namespace) -> int:
    try:
        run = dashboard("server").run
    except ImportError as exc:
        raise CLIError(
            f"flux dev needs the viewer extra: pip install 'gravito-flux[viewer]' ({exc})"
        ) from None
    if args.storage is None and (args.workflows or args.read_only) and not args.demo:
        raise CLIError("--workflows and --read-only are about stored runs: pass --storage URL too")
    traces = _traces(args.trace, args.storage)
    storage = None
    if args.storage is not None and not args.demo:
        storage = _open_storage(args.storage)
    return run(  # type: ignore[no-any-return]
        traces[0] if traces else Path(DEFAULT_TRACE),
        host=args.host,
        port=args.port,
        demo=args.demo,
        open_browser=args.open,
        allow_hosts=args.allow_host,
        storage=storage,
        traces=traces,
        workflows=load_workflows(args.workflows),
        read_only=args.read_only,
        stuck_after=args.stuck_after,
    )


def _worker(args: argparse.Namespace) -> int:
    from .worker import WorkerPool

    if not args.storage:
        raise CLIError("no storage: pass --storage postgresql://... (or set FLUX_STORAGE)")
    if args.concurrency < 1:
        raise CLIError(f"--concurrency must be >= 1, got {args.concurrency}")
    flows = [load_workflow(spec) for spec in args.workflows]
    asyncio.run(_open_storage(args.storage).close())  # fail early on a bad URL
    pool = WorkerPool(flows, args.storage, concurrency=args.concurrency, burst=args.burst, poll=args.poll,
                      grace=args.grace, trace=args.trace, lease_seconds=args.lease)  # fmt: skip
    pool.install_signal_handlers()
    executed = pool.run()
    print(f"flux worker: executed {executed} run(s)", file=sys.stderr)
    if pool.errors:
        print(f"flux: error: a worker stopped: {pool.errors[0]!r}", file=sys.stderr)
        return 1
    return 0


async def _runs(args: argparse.Namespace) -> int:
    if not args.storage:
        raise CLIError("no storage: pass --storage sqlite:///path.db (or set FLUX_STORAGE)")
    trace = None
    if getattr(args, "trace", None):
        from .trace import JsonFileTraceSink

        trace = JsonFileTraceSink(args.trace, reset=False)
    engine = FluxEngine(storage=_open_storage(args.storage), logger=FluxSilentLogger(), trace=trace)
    try:
        if args.action == "list":
            results = await engine.list(args.name, args.status, args.limit, args.offset)
            if args.json:
                for r in results:
                    print(printable_json(json.dumps(_summary(r), ensure_ascii=False)))
            else:
                _print_table(results)
        elif args.action == "show":
            result = await engine.get(args.id)
            if args.json:
                print(printable_json(json.dumps(_detail(result), ensure_ascii=False, indent=2)))
            else:
                _print_run(result)
        elif args.action == "prune":
            print(await engine.prune(parse_age(args.older_than), args.status))
        elif args.action == "cancel":
            flow = load_workflow(args.workflow) if args.workflow else None
            before = await _before(engine, args.id)
            result = await engine.cancel(args.id, args.reason, flow=flow)
            _record(engine, before, "cancel", reason=args.reason)
            _print_run(result)
            if result.status is not RunStatus.CANCELLED:
                print(f"flux: cancel requested; run '{result.id}' is {result.status.value} in another "
                      "process, which cancels it at its next heartbeat", file=sys.stderr)  # fmt: skip
        elif args.action == "retry":
            flow = load_workflow(args.workflow)
            before = await _before(engine, args.id)
            result = await engine.retry_step(flow, args.id, args.step)
            _record(engine, before, "retry", stepName=args.step)
            _print_run(result)
            if result.status.value in ("failed", "rolled_back", "rollback_failed"):
                where = f"step '{result.failed_step}'" if result.failed_step else "the run"
                print(
                    f"flux: error: run {result.id} ({result.name}): {where} failed again: "
                    f"{result.error_type}: {result.error}",
                    file=sys.stderr,
                )
                return 1
        else:
            try:
                payload = json.loads(args.payload)
            except ValueError as exc:  # not JSON, or an integer of more digits than Python reads
                raise CLIError(f"--payload is not valid JSON: {printable(str(exc))}") from None
            flow = load_workflow(args.workflow)
            before = await _before(engine, args.id)
            result = await engine.signal(flow, args.id, args.signal, payload)
            _record(engine, before, "signal", signal=args.signal, data=payload)
            _print_run(result)
    finally:
        await engine.close()
    return 0


async def _before(engine: FluxEngine, run_id: str) -> tuple[RunRecord, float] | None:
    """The run as it stands before an action, and when the action began (with a trace)."""
    if engine.trace is None:
        return None
    at = time.time()
    run = await engine.storage.load_run(run_id)
    return None if run is None else (run, at)


def _record(engine: FluxEngine, before: tuple[RunRecord, float] | None, action: str, **fields: Any) -> None:
    """The `workflow:action` of SPEC §12 (`by: "cli"`), when a trace is written. Written
    once the engine has done it (a refused action is not one), with the time it began and
    the number of the run's last event before it: a reader ordering by `seq` sees it ahead
    of what the engine did for it."""
    if engine.trace is None or before is None:
        return
    run, at = before
    ev = action_event(run_id=run.id, name=run.name, seq=run.seq, timestamp=timestamp_ms(at),
                      action=action, by="cli", **fields)  # fmt: skip
    engine.trace.emit(ev)


def load_workflow(spec: str) -> Workflow[Any]:
    """Import `module:attribute` (the current directory is importable) and check it."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CLIError(f"--workflow {spec!r}: expected module:attribute, e.g. myapp.flows:order_flow")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CLIError(f"--workflow {spec!r}: cannot import {module_name}: {exc}") from None
    except Exception as exc:  # the module's own top-level code failed
        raise CLIError(
            f"--workflow {spec!r}: importing {module_name} raised {type(exc).__name__}: {exc} "
            f"(a module's top-level code runs when it is imported: put a script's own work "
            f'under `if __name__ == "__main__":`)'
        ) from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CLIError(f"--workflow {spec!r}: {module_name} has no attribute {attribute!r}") from None
    if not isinstance(target, Workflow):
        raise CLIError(
            f"--workflow {spec!r} is a {type(target).__name__}, not a workflow from create_workflow()"
        )
    return target


def _summary(r: FluxResult) -> dict[str, Any]:
    done = sum(1 for s in r.history if s.status.value in ("completed", "skipped"))
    return {
        "id": r.id,
        "workflow": r.name,
        "status": r.status.value,
        "created_at": r.created_at.isoformat() if r.created_at else None,
        "duration": round(r.duration, 6),
        "steps_done": done,
        "steps": len(r.history),
        "error": r.error,
        "error_type": r.error_type,
        "waiting_for": r.waiting_for,
        "wake_at": r.wake_at.isoformat() if r.wake_at else None,
        "deadline": r.deadline.isoformat() if r.deadline else None,
    }


def _detail(r: FluxResult) -> dict[str, Any]:
    return {
        **_summary(r),
        "input": ser.to_jsonable(r.input),
        "data": ser.to_jsonable(r.data),
        "failed_step": r.failed_step,
        "version": r.version,
        "history": [
            {
                "name": s.name,
                "status": s.status.value,
                "attempts": s.attempts,
                "commit": s.commit,
                "duration": s.duration,
                "error": s.error,
                "error_type": s.error_type,
                "output": ser.to_jsonable(s.output),
            }
            for s in r.history
        ],
    }


def _print_table(results: list[FluxResult]) -> None:
    if not results:
        print("no runs")
        return
    rows = [("ID", "WORKFLOW", "STATUS", "CREATED", "STEPS", "ERROR")]
    for r in results:
        s = _summary(r)
        rows.append(
            (
                printable(r.id),
                printable(r.name),
                r.status.value,
                _utc(r.created_at),
                f"{s['steps_done']}/{s['steps']}",
                printable(r.error or "")[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def _utc(moment: dt.datetime | None) -> str:
    """A stored time as UTC, saying so: `2026-12-01 21:34:08Z`."""
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _seconds(duration: float | None) -> str:
    return "" if duration is None else f"{duration:.3f}s"


def _print_run(r: FluxResult) -> None:
    # Stored strings go through printable(): a terminal escape in an id or error is shown, not run.
    print(
        printable(f"run {r.id}  workflow {r.name}  status {r.status.value}")
        + (printable(f"  waiting for '{r.waiting_for}'") if r.waiting_for else "")
    )
    times = f"created {_utc(r.created_at)}" if r.created_at else ""
    if r.completed_at:
        times += f"  finished {_utc(r.completed_at)}"
    if r.wake_at:
        times += f"  wakes {_utc(r.wake_at)}"
    if r.deadline:
        times += f"  deadline {_utc(r.deadline)}"
    print((times + f"  took {_seconds(r.duration)}").strip())
    if r.error:
        step = printable(f" (step {r.failed_step})") if r.failed_step else ""
        print(f"error: {printable(f'{r.error_type}: {r.error}', multiline=True)}{step}")
    print(f"input: {printable_json(json.dumps(ser.to_jsonable(r.input), ensure_ascii=False))}")
    print(f"data:  {printable_json(json.dumps(ser.to_jsonable(r.data), ensure_ascii=False))}")
    for s in r.history:
        kind = "commit" if s.commit else "step"
        line = f"  {s.name:<20} {kind:<6} {s.status.value:<20} attempts={s.attempts}"
        if s.started_at:
            line += f"  started {_utc(s.started_at)}"
        if s.duration is not None:
            line += f"  took {_seconds(s.duration)}"
        print(printable(line))
        if s.output is not None:
            output = printable_json(json.dumps(ser.to_jsonable(s.output), ensure_ascii=False))
            print(f"      output: {output}")
        if s.error:
            error = printable(f"{s.error_type or 'Error'}: {s.error}", multiline=True)
            print(f"      error:  {error}")


if __name__ == "__main__":
    sys.exit(main())
