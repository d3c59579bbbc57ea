"""``flux dev --demo``: run the bundled example workflows into files of the demo's own.

Each example module (``examples/*.py`` in a source checkout, ``flux/_dev/examples/`` in an
installed wheel) exposes ``async def run(engine) -> list[FluxResult]``. The demo loads
them by file path and runs them all on one engine whose runs are stored in
``<trace folder>/demo/workflows.db`` and whose events go to ``<trace folder>/demo/trace.ndjson``
(both made anew at each demo), closes the engine so that every event is on disk, and prints
a line per workflow. The user's own trace file is never opened.

Together they leave retries, skipped branches, saga rollbacks (one that fails), a run
that waits for a signal (``EXP-3-demo``, which ``flux runs signal`` can approve, as the
demo prints), a signal that completed a run, a ``retry_step``, two trials asleep for eleven
days (durable sleeps, a wait with a timeout ahead), and a run started by a schedule (the
schedule ``digest-demo`` stays stored, for ``flux schedules list``).
Files the examples produce (thumbnails, reports) go to ``<trace folder>/demo/`` too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import inspect
import sys
import threading
import zlib
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from flux import FluxEngine, FluxResult, FluxSilentLogger, JsonFileTraceSink, Workflow


@dataclass(frozen=True)
class Scenario:
    """One part of the demo: an example module (``examples/<stem>.py``) whose
    ``run(engine, ...)`` the demo calls. Add a scenario to show something more."""

    stem: str
    #: Its steps take realistic times (tens to hundreds of ms), so that timelines show
    #: something: the example's own handlers are instantaneous.
    paced: bool = True


#: The demo, in the order it reports its parts (they run at the same time).
SCENARIOS: list[Scenario] = [
    Scenario("order_fulfillment"),
    Scenario("event_routing"),
    Scenario("multi_node"),
    Scenario("report_generation"),
    Scenario("image_processing"),
    Scenario("travel_booking"),
    Scenario("retry_failed_step"),
    Scenario("approval"),
    Scenario("trial_reminders"),
    Scenario("scheduled_digest"),
    Scenario("checkout_parallel"),
    Scenario("thumbnails_map"),
]

#: The example modules the demo runs.
EXAMPLES = tuple(s.stem for s in SCENARIOS)

#: How long a paced step takes: between these (ms), the same for a step at every demo.
PACE_MS = (15, 160)

#: Examples that need a package outside the standard library: module -> (import, install).
NEEDS = {"image_processing": ("PIL", "pillow")}

#: The run ids of the demo end with this (``EXP-3-demo`` is left waiting for its approval).
TAG = "demo"

#: The run that the demo leaves suspended, and the signal it waits for.
WAITING = ("approval", f"EXP-3-{TAG}", "approval")


def examples_dir() -> Path:
    """Where the example modules are: shipped next to the viewer, or in the checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "examples", here.parent / "examples"):
        if (candidate / f"{EXAMPLES[0]}.py").is_file():
            return candidate
    raise NotImplementedError(
        f"the example workflows are not in this build (looked in {here / 'examples'} "
        f"and {here.parent / 'examples'})"
    )


def load_example(path: Path) -> ModuleType:
    """Import an example module from its file, under a name of its own.

    The module is registered in ``sys.modules`` before it runs, so that its dataclasses
    work and the engine can rebuild them from storage by module name.
    """
    name = f"flux_examples_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the example {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def demo_folder(trace: Path) -> Path:
    """Where the demo keeps its files, beside the trace that ``flux dev`` was given."""
    return Path(trace).parent / "demo"


#: The definitions of the last demo's runs, by name: the dashboard's actions run them.
_LOADED: dict[str, Workflow[Any]] = {}


def loaded_workflows() -> dict[str, Workflow[Any]]:
    """The workflows the last ``run_demo`` ran, by name (for ``flux dev``'s actions)."""
    return dict(_LOADED)


def storage_url(out: Path) -> str:
    """The demo's SQLite file (in ``out``, the demo's folder) as a storage URL."""
    return f"sqlite:///{(Path(out) / 'workflows.db').resolve()}"


def _run_kwargs(module: ModuleType, out: Path) -> dict[str, Any]:
    """Where an example that writes files should write them, and the tag of its run ids."""
    params = inspect.signature(module.run).parameters
    wanted = {"upload_dir": out / "uploads", "report_dir": out / "reports", "tag": TAG}
    return {k: v for k, v in wanted.items() if k in params}


def _summary(results: list[FluxResult]) -> str:
    latest: dict[str, FluxResult] = {}
    for result in results:  # a run may appear twice (suspended, then completed): keep the last
        latest[result.id] = result
    counts: dict[str, int] = {}
    for result in latest.values():
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
    statuses = ", ".join(f"{n} {status}" for status, n in counts.items())
    workflows = ", ".join(sorted({r.name for r in latest.values()}))
    runs = "run" if len(latest) == 1 else "runs"
    return f"  {workflows:<20} {len(latest)} {runs}: {statuses}"


def _fresh_database(path: Path) -> str:
    """The demo's own SQLite file, made anew (its run ids are the same at every demo), as a URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    return storage_url(path.parent)


def step_ms(workflow: str, step: str, compensate: bool = False) -> float:
    """How long a paced step takes, from its names: a stable spread within ``PACE_MS``."""
    low, high = PACE_MS
    spread = zlib.crc32(f"{workflow}/{step}/{compensate}".encode()) % 1000 / 1000.0
    ms = float(low + (high - low) * spread**1.5)  # most steps quick, a few slow
    return ms / 2 if compensate else ms


def _paced(fn: Any, is_async: bool, seconds: float) -> Any:
    """``fn`` made to take ``seconds`` more, as an async handler (sync ones run inline on
    the demo's loop, as they would without a timeout)."""
    if is_async:

        async def paced_async(ctx: Any) -> Any:
            await asyncio.sleep(seconds)
            return await fn(ctx)

        return paced_async

    async def paced_sync(ctx: Any) -> Any:
        await asyncio.sleep(seconds)
        result = fn(ctx)
        return await result if inspect.isawaitable(result) else result

    return paced_sync


def pace(flow: Workflow[Any]) -> None:
    """Make ``flow``'s steps and compensations take realistic times (in place: the
    example's ``run`` uses this very definition)."""
    steps = []
    for step in flow.steps:
        changes: dict[str, Any] = {
            "handler": _paced(step.handler, step.is_async, step_ms(flow.name, step.name) / 1000.0),
            "is_async": True,
        }
        if step.compensate is not None:
            ms = step_ms(flow.name, step.name, compensate=True)
            changes["compensate"] = _paced(step.compensate, step.compensate_is_async, ms / 1000.0)
            changes["compensate_is_async"] = True
        steps.append(dataclasses.replace(step, **changes))
    flow._steps = tuple(steps)


async def _run_scenario(engine: FluxEngine, scenario: Scenario, out: Path) -> str:
    stem = scenario.stem
    needed = NEEDS.get(stem)
    if needed is not None and importlib.util.find_spec(needed[0]) is None:
        return f"  {stem:<20} skipped: needs {needed[0]} (pip install {needed[1]})"
    module = load_example(examples_dir() / f"{stem}.py")
    flows = [value for value in list(vars(module).values()) if isinstance(value, Workflow)]
    for flow in flows:
        if scenario.paced:
            pace(flow)
        _LOADED[flow.name] = flow
    results = await module.run(engine, **_run_kwargs(module, out))
    return _summary(results)


async def _run_all(out: Path) -> list[str]:
    engine = FluxEngine(
        storage=_fresh_database(out / "workflows.db"),
        trace=JsonFileTraceSink(out / "trace.ndjson", reset=True),
        logger=FluxSilentLogger(),
    )
    try:
        # at the same time: paced steps wait, and the demo takes as long as its longest part
        return list(await asyncio.gather(*(_run_scenario(engine, s, out) for s in SCENARIOS)))
    finally:
        await engine.close()  # flushes the trace


def _run_coroutine(coro: Coroutine[Any, Any, list[str]]) -> list[str]:
    """asyncio.run, also when called from code that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="flux-demo")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: list[str] = box["value"]
    return result


def approve_command(out: Path) -> str:
    """The command that approves the run the demo leaves waiting (the dashboard shows it live)."""
    folder = examples_dir()
    stem, run_id, signal = WAITING
    here = Path(__file__).resolve().parent
    # installed, the examples ship inside the dashboard's package; in a checkout, from its root
    module = f"{__package__}.examples.{stem}" if folder.parent == here else f"{folder.name}.{stem}"
    return (
        f'flux runs signal {run_id} {signal} --payload \'{{"approved": true, "by": "you"}}\' '
        f"--workflow {module}:approval_flow --storage sqlite:///{out / 'workflows.db'} "
        f"--trace {out / 'trace.ndjson'}"
    )


def run_demo(trace: Path) -> Path:
    """Run the demo workflows into ``<trace folder>/demo/`` and return the demo's trace file.

    ``trace`` itself is not opened: the user's own trace is left as it is.
    """
    out = demo_folder(trace)
    print(f"flux dev --demo: running the example workflows into {out / 'trace.ndjson'}")
    print(f"  (runs stored in {out / 'workflows.db'}; {trace} is left as it is)")
    for line in _run_coroutine(_run_all(out)):
        print(line)
    print(f"  {WAITING[1]} waits for its approval; approve it with:\n    {approve_command(out)}")
    return out / "trace.ndjson"
