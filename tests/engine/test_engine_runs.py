"""flux.engine: execute with an id, resume, retry_step, definition changes and recover."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flux
from flux import (
    FatalError,
    Flux,
    FluxEngine,
    FluxResult,
    RunConflictError,
    RunNotFoundError,
    RunStateError,
    RunStatus,
    StepStatus,
    WorkflowContext,
    WorkflowVersionError,
    create_workflow,
)

from ..services import needs_stored_identity

EngineFactory = Callable[..., FluxEngine]
ROOT = Path(flux.__file__).resolve().parent.parent


class Steps:
    """Handlers that count their calls, record what they saw, and fail while told to."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seen: dict[str, list[Any]] = {}
        self.keys: dict[str, list[str]] = {}
        self.failing: set[str] = set()

    def __call__(self, name: str) -> Callable[[WorkflowContext[Any]], Any]:
        def handler(ctx: WorkflowContext[Any]) -> Any:
            self.calls[name] += 1
            self.seen.setdefault(name, []).append(dict(ctx.data))
            self.keys.setdefault(name, []).append(ctx.idempotency_key)
            if name in self.failing:
                raise FatalError(f"{name} is broken")
            ctx.data[name] = self.calls[name]
            return f"{name}#{self.calls[name]}"

        return handler

    def flow(
        self, *names: str, name: str = "runs", compensate: tuple[str, ...] = (), commits: tuple[str, ...] = ()
    ) -> Any:
        flow: Any = create_workflow(name)
        for step in names:
            undo = (lambda ctx, s=step: self.calls.update([f"undo {s}"])) if step in compensate else None
            add = flow.commit if step in commits else flow.step
            flow = add(step, self(step), compensate=undo, retries=0)
        return flow


def _same(a: FluxResult, b: FluxResult) -> None:
    assert (a.id, a.name, a.status, a.input, a.data, dict(a.outputs), a.error, a.error_type) == (
        b.id,
        b.name,
        b.status,
        b.input,
        b.data,
        dict(b.outputs),
        b.error,
        b.error_type,
    )
    assert [(h.name, h.status, h.attempts, h.output, h.error) for h in a.history] == [
        (h.name, h.status, h.attempts, h.output, h.error) for h in b.history
    ]


# ------------------------------------------------------------------ execute with an id


def test_a_completed_run_returns_its_stored_result_without_running_again(make_engine: EngineFactory) -> None:
    steps = Steps()
    flow = steps.flow("a", "b")
    first = make_engine().execute_sync(flow, {"order": 1}, id="ORD-1")
    again = make_engine().execute_sync(flow, {"order": 1}, id="ORD-1")
    assert first.status is RunStatus.COMPLETED
    assert steps.calls == {"a": 1, "b": 1}
    _same(first, again)
    assert again.outputs == {"a": "a#1", "b": "b#1"}


def test_the_same_id_with_another_input_is_a_conflict(make_engine: EngineFactory) -> None:
    engine = make_engine()
    steps = Steps()
    flow = steps.flow("a")
    engine.execute_sync(flow, {"order": 1}, id="ORD-2")
    before = engine.get_sync("ORD-2")
    with pytest.raises(RunConflictError) as info:
        engine.execute_sync(flow, {"order": 2}, id="ORD-2")
    assert "'ORD-2'" in str(info.value) and "input" in str(info.value)
    assert steps.calls == {"a": 1}
    _same(before, engine.get_sync("ORD-2"))


def test_the_same_id_for_another_workflow_is_a_conflict(make_engine: EngineFactory) -> None:
    engine = make_engine()
    steps = Steps()
    engine.execute_sync(steps.flow("a", name="first"), {}, id="shared")
    with pytest.raises(RunConflictError) as info:
        engine.execute_sync(steps.flow("a", name="second"), {}, id="shared")
    assert "'first'" in str(info.value) and "'second'" in str(info.value)
    assert steps.calls == {"a": 1}
    assert engine.get_sync("shared").name == "first"
    assert [r.id for r in engine.list_sync()] == ["shared"]


def test_a_failed_run_resumes_from_its_failed_step(make_engine: EngineFactory) -> None:
    steps = Steps()
    steps.failing.add("b")
    flow = steps.flow("a", "b", "c")
    failed = make_engine().execute_sync(flow, {"n": 1}, id="F-1")
    assert failed.status is RunStatus.FAILED and failed.failed_step == "b"
    steps.failing.clear()
    done = make_engine().execute_sync(flow, {"n": 1}, id="F-1")
    assert done.status is RunStatus.COMPLETED
    assert steps.calls == {"a": 1, "b": 2, "c": 1}
    # b runs again with the data as it was before it first ran.
    assert steps.seen["b"] == [{"a": 1}, {"a": 1}]
    assert done.outputs == {"a": "a#1", "b": "b#2", "c": "c#1"}
    assert steps.keys["b"] == ["F-1:b", "F-1:b"]
    assert (done.error, done.error_type, done.failed_step) == (None, None, None)


def test_resume_continues_a_failed_run(make_engine: EngineFactory) -> None:
    steps = Steps()
    steps.failing.add("b")
    flow = steps.flow("a", "b", "c")
    make_engine().execute_sync(flow, id="F-2")
    steps.failing.clear()
    done = make_engine().resume_sync(flow, "F-2")
    assert done.status is RunStatus.COMPLETED
    assert steps.calls == {"a": 1, "b": 2, "c": 1}


def test_resume_of_a_completed_run_runs_nothing(make_engine: EngineFactory) -> None:
    steps = Steps()
    flow = steps.flow("a")
    make_engine().execute_sync(flow, id="C-1")
    assert make_engine().resume_sync(flow, "C-1").status is RunStatus.COMPLETED
    assert steps.calls == {"a": 1}


def test_resume_of_an_unknown_run_raises(make_engine: EngineFactory) -> None:
    with pytest.raises(RunNotFoundError, match="'nope'"):
        make_engine().resume_sync(Steps().flow("a"), "nope")


def test_a_rolled_back_run_executed_again_redoes_the_compensated_steps(make_engine: EngineFactory) -> None:
    steps = Steps()
    steps.failing.add("b")
    flow = steps.flow("a", "b", compensate=("a",))
    assert make_engine().execute_sync(flow, id="RB-1").status is RunStatus.ROLLED_BACK
    steps.failing.clear()
    done = make_engine().execute_sync(flow, id="RB-1")
    assert done.status is RunStatus.COMPLETED
    assert steps.calls == {"a": 2, "b": 2, "undo a": 1}
    assert steps.seen["a"] == [{}, {}]


def test_concurrent_executes_of_one_id_run_the_handlers_once(make_engine: EngineFactory) -> None:
    engine = make_engine()
    calls: list[int] = []

    async def main() -> list[FluxResult]:
        started, gate = asyncio.Event(), asyncio.Event()

        async def slow(ctx: WorkflowContext[Any]) -> str:
            calls.append(ctx.attempt)
            started.set()
            await gate.wait()
            return "once"

        flow = create_workflow("dup").step("slow", slow).step("after", lambda ctx: calls.append(0))
        first = asyncio.create_task(engine.execute(flow, {"m": 1}, id="MSG-1"))
        await started.wait()
        others = [asyncio.create_task(engine.execute(flow, {"m": 1}, id="MSG-1")) for _ in range(3)]
        for _ in range(10):
            await asyncio.sleep(0)  # let the duplicates reach the running run
        gate.set()
        return await asyncio.gather(first, *others)

    results = asyncio.run(main())
    assert calls == [1, 0]
    assert {r.status for r in results} == {RunStatus.COMPLETED}
    assert all(dict(r.outputs) == {"slow": "once", "after": None} for r in results)


def test_two_engines_of_one_process_never_run_one_run_at_once(make_engine: EngineFactory) -> None:
    """A second engine on the same storage (as a web app that builds one per request)
    must see that the run is being executed and not run its handlers a second time."""
    first, second = make_engine(), make_engine()
    calls: list[int] = []

    async def main() -> Any:
        started, gate = asyncio.Event(), asyncio.Event()

        async def slow(ctx: WorkflowContext[Any]) -> str:
            calls.append(ctx.attempt)
            started.set()
            await gate.wait()
            return "once"

        flow = create_workflow("dup").step("slow", slow)
        one = asyncio.create_task(first.execute(flow, {"m": 1}, id="MSG-2"))
        await started.wait()
        two = asyncio.create_task(second.execute(flow, {"m": 1}, id="MSG-2"))
        for _ in range(10):
            await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(one, two, return_exceptions=True)

    results = asyncio.run(main())
    assert calls == [1]
    assert not any(isinstance(r, BaseException) for r in results), results
    assert results[0].status is RunStatus.COMPLETED
    assert make_engine().get_sync("MSG-2").outputs == {"slow": "once"}


def test_a_cancelled_execute_leaves_a_run_that_execute_finishes(make_engine: EngineFactory) -> None:
    engine = make_engine()
    calls: list[str] = []

    async def main() -> FluxResult:
        started, gate = asyncio.Event(), asyncio.Event()

        async def slow(ctx: WorkflowContext[Any]) -> str:
            calls.append("slow")
            if calls.count("slow") == 1:
                started.set()
                await gate.wait()
            return "done"

        flow = create_workflow("cancel").step("a", lambda ctx: calls.append("a")).step("slow", slow)
        task = asyncio.create_task(engine.execute(flow, {}, id="CX-1"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await engine.get("CX-1")).status is RunStatus.RUNNING
        return await engine.execute(flow, {}, id="CX-1")

    result = asyncio.run(main())
    assert result.status is RunStatus.COMPLETED
    assert calls == ["a", "slow", "slow"]  # a step is at-least-once; a is not repeated


def test_a_commit_cancelled_in_flight_is_not_run_again(make_engine: EngineFactory) -> None:
    engine = make_engine()
    calls: list[str] = []

    async def main() -> FluxResult:
        started, gate = asyncio.Event(), asyncio.Event()

        async def pay(ctx: WorkflowContext[Any]) -> str:
            calls.append("pay")
            started.set()
            await gate.wait()
            return "paid"

        flow = create_workflow("cancel").commit("pay", pay)
        task = asyncio.create_task(engine.execute(flow, {}, id="CX-2"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await engine.execute(flow, {}, id="CX-2")

    result = asyncio.run(main())
    assert calls == ["pay"]
    assert (result.status, result.error_type) == (RunStatus.FAILED, "CommitInterruptedError")


# ------------------------------------------------------------------ retry_step


def test_retry_step_reruns_the_step_and_the_ones_after(make_engine: EngineFactory) -> None:
    steps = Steps()
    flow = steps.flow("a", "b", "c")
    make_engine().execute_sync(flow, {"x": 1}, id="RS-1")
    result = make_engine().retry_step_sync(flow, "RS-1", "b")
    assert result.status is RunStatus.COMPLETED
    assert steps.calls == {"a": 1, "b": 2, "c": 2}
    # ctx.data as it was before b first ran: a's change, not b's nor c's.
    assert steps.seen["b"] == [{"a": 1}, {"a": 1}]
    assert steps.seen["c"] == [{"a": 1, "b": 1}, {"a": 1, "b": 2}]
    assert result.data == {"a": 1, "b": 2, "c": 2}
    assert result.outputs == {"a": "a#1", "b": "b#2", "c": "c#2"}


def test_retry_step_of_a_failed_step(make_engine: EngineFactory) -> None:
    steps = Steps()
    steps.failing.add("b")
    flow = steps.flow("a", "b", "c")
    make_engine().execute_sync(flow, id="RS-2")
    steps.failing.clear()
    result = make_engine().retry_step_sync(flow, "RS-2", "b")
    assert result.status is RunStatus.COMPLETED
    assert steps.calls == {"a": 1, "b": 2, "c": 1}


def test_retry_step_moves_back_to_a_compensated_step(make_engine: EngineFactory) -> None:
    steps = Steps()
    steps.failing.add("c")
    flow = steps.flow("a", "b", "c", compensate=("b",))
    rolled = make_engine().execute_sync(flow, id="RS-3")
    assert rolled.status is RunStatus.ROLLED_BACK
    assert [h.status for h in rolled.history] == [
        StepStatus.COMPLETED,
        StepStatus.COMPENSATED,
        StepStatus.FAILED,
    ]
    steps.failing.clear()
    result = make_engine().retry_step_sync(flow, "RS-3", "c")
    assert result.status is RunStatus.COMPLETED
    # b's effect was undone, so it runs again, with the data from before it first ran.
    assert steps.calls == {"a": 1, "b": 2, "c": 2, "undo b": 1}
    assert steps.seen["b"] == [{"a": 1}, {"a": 1}]


def test_retry_step_of_an_unknown_step_names_it(make_engine: EngineFactory) -> None:
    engine = make_engine()
    steps = Steps()
    flow = steps.flow("a")
    engine.execute_sync(flow, id="RS-4")
    before = engine.get_sync("RS-4")
    with pytest.raises(RunStateError, match="'nope'"):
        engine.retry_step_sync(flow, "RS-4", "nope")
    _same(before, engine.get_sync("RS-4"))
    assert steps.calls == {"a": 1}


def test_retry_step_of_an_unknown_run_raises(make_engine: EngineFactory) -> None:
    with pytest.raises(RunNotFoundError):
        make_engine().retry_step_sync(Steps().flow("a"), "missing", "a")


def test_retry_step_of_a_commit_keeps_its_idempotency_key(make_engine: EngineFactory) -> None:
    steps = Steps()
    flow = steps.flow("prepare", "pay", "notify", commits=("pay",))
    make_engine().execute_sync(flow, id="PAY-1")
    result = make_engine().retry_step_sync(flow, "PAY-1", "pay")
    assert result.status is RunStatus.COMPLETED
    assert steps.keys["pay"] == ["PAY-1:pay", "PAY-1:pay"]
    assert steps.calls == {"prepare": 1, "pay": 2, "notify": 2}
    assert result.history[1].commit


def test_a_finished_commit_never_runs_again_on_resume(make_engine: EngineFactory) -> None:
    steps = Steps()
    steps.failing.add("after")
    flow = steps.flow("pay", "after", commits=("pay",))
    make_engine().execute_sync(flow, id="PAY-2")
    steps.failing.clear()
    assert make_engine().resume_sync(flow, "PAY-2").status is RunStatus.COMPLETED
    assert steps.calls == {"pay": 1, "after": 2}


# ------------------------------------------------------------------ definition changes


def _suspended_run(make_engine: EngineFactory, steps: Steps) -> None:
    flow = (
        create_workflow("v")
        .step("a", steps("a"))
        .step("approve", lambda ctx: Flux.wait("ok"))
        .step("c", steps("c"))
    )
    assert make_engine().execute_sync(flow, id="V-1").status is RunStatus.SUSPENDED


@pytest.mark.parametrize(
    "changed",
    [
        lambda s: create_workflow("v").step("a2", s("a")).step("approve", lambda ctx: None).step("c", s("c")),
        lambda s: (
            create_workflow("v").commit("a", s("a")).step("approve", lambda ctx: None).step("c", s("c"))
        ),
        lambda s: create_workflow("v").step("x", s("x")).step("a", s("a")).step("approve", lambda ctx: None),
        lambda s: create_workflow("v").step("approve", lambda ctx: None).step("c", s("c")),
    ],
    ids=["renamed", "step-became-commit", "inserted-before", "removed"],
)
def test_a_changed_finished_step_raises_a_version_error(make_engine: EngineFactory, changed: Any) -> None:
    steps = Steps()
    _suspended_run(make_engine, steps)
    engine = make_engine()
    before = engine.get_sync("V-1")
    with pytest.raises(WorkflowVersionError) as info:
        engine.signal_sync(changed(steps), "V-1", "ok")
    assert "step 'a'" in str(info.value)
    assert "'V-1'" in str(info.value)
    after = engine.get_sync("V-1")
    assert (after.status, after.waiting_for) == (RunStatus.SUSPENDED, "ok")
    _same(before, after)
    assert steps.calls == {"a": 1}


def test_resuming_a_failed_run_with_a_changed_finished_step_raises(make_engine: EngineFactory) -> None:
    steps = Steps()
    steps.failing.add("b")
    make_engine().execute_sync(steps.flow("a", "b"), id="V-2")
    with pytest.raises(WorkflowVersionError, match="'a'"):
        make_engine().resume_sync(steps.flow("a0", "b"), "V-2")
    with pytest.raises(WorkflowVersionError, match="'a'"):
        make_engine().execute_sync(steps.flow("a0", "b"), id="V-2")
    assert steps.calls == {"a": 1, "b": 1}


def test_adding_a_step_at_the_end_is_allowed(make_engine: EngineFactory) -> None:
    steps = Steps()
    _suspended_run(make_engine, steps)
    grown = (
        create_workflow("v")
        .step("a", steps("a"))
        .step("approve", lambda ctx: None)
        .step("c", steps("c"))
        .step("d", steps("d"))
        .version("v2")
    )
    result = make_engine().signal_sync(grown, "V-1", "ok", {"by": "ann"})
    assert result.status is RunStatus.COMPLETED
    assert [h.name for h in result.history] == ["a", "approve", "c", "d"]
    assert steps.calls == {"a": 1, "c": 1, "d": 1}
    assert result.version == "v2"
    assert make_engine().get_sync("V-1").version == "v2"


def test_changing_steps_that_have_not_run_is_allowed(make_engine: EngineFactory) -> None:
    steps = Steps()
    _suspended_run(make_engine, steps)
    changed = (
        create_workflow("v").step("a", steps("a")).step("approve", lambda ctx: None).step("c2", steps("c2"))
    )
    result = make_engine().signal_sync(changed, "V-1", "ok")
    assert result.status is RunStatus.COMPLETED
    assert steps.calls == {"a": 1, "c2": 1}


# ------------------------------------------------------------------ recover


_WORKER = textwrap.dedent(
    """
    import os, sys
    from flux import FluxEngine, FluxSilentLogger, SQLiteStorage, create_workflow

    db, kind = sys.argv[1], sys.argv[2]

    def a(ctx):
        ctx.data["a_pid"] = os.getpid()
        return "A"

    def die(ctx):
        os._exit(9)  # the process dies in the middle of the step

    flow = create_workflow("crashy").step("a", a, compensate=lambda ctx: None)
    flow = getattr(flow, kind)("b", die).step("c", lambda ctx: "C")
    engine = FluxEngine(SQLiteStorage(db), logger=FluxSilentLogger())
    engine.execute_sync(flow, {"n": 1}, id="CRASH-1")
    """
)


def _crash(tmp_path: Path, kind: str) -> Path:
    db = tmp_path / "crash.db"
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(script), str(db), kind], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 9, proc.stderr
    return db


def _crash_flow(steps: Steps, kind: str) -> Any:
    flow = create_workflow("crashy").step(
        "a", steps("a"), compensate=lambda ctx: steps.calls.update(["undo a"])
    )
    return getattr(flow, kind)("b", steps("b")).step("c", steps("c"))


@needs_stored_identity
def test_recover_finishes_a_run_left_running_by_a_dead_process(tmp_path: Path) -> None:
    db = _crash(tmp_path, "step")
    steps = Steps()
    with FluxEngine(flux.SQLiteStorage(db)) as engine:
        assert engine.get_sync("CRASH-1").status is RunStatus.RUNNING
        [result] = engine.recover_sync([_crash_flow(steps, "step")])
        assert result.id == "CRASH-1"
        assert result.status is RunStatus.COMPLETED
        assert steps.calls == {"b": 1, "c": 1}  # a finished before the crash: not again
        assert result.outputs["a"] == "A"
        assert result.data["a_pid"] != os.getpid()
        assert engine.recover_sync([_crash_flow(steps, "step")]) == []


@needs_stored_identity
def test_recover_never_repeats_an_interrupted_commit(tmp_path: Path) -> None:
    db = _crash(tmp_path, "commit")
    steps = Steps()
    flow = _crash_flow(steps, "commit")
    with FluxEngine(flux.SQLiteStorage(db)) as engine:
        [result] = engine.recover_sync([flow])
        assert result.status is RunStatus.FAILED
        assert result.error_type == "CommitInterruptedError"
        assert result.failed_step == "b"
        assert steps.calls == {}  # neither the commit again nor a's compensation
        # Executing the same id again does not run it either.
        assert engine.execute_sync(flow, {"n": 1}, id="CRASH-1").error_type == "CommitInterruptedError"
        assert steps.calls == {}
        # retry_step is the explicit way, with the same idempotency key.
        retried = engine.retry_step_sync(flow, "CRASH-1", "b")
        assert retried.status is RunStatus.COMPLETED
        assert steps.keys["b"] == ["CRASH-1:b"]
        assert steps.calls == {"b": 1, "c": 1}


def test_a_run_finished_by_another_process_between_load_and_claim_is_not_run_again() -> None:
    """The engine's view of a run can be stale by the time it holds the lease: it reloads,
    and leaves a run that came to rest meanwhile as it is."""
    calls: list[str] = []

    def ask(ctx: WorkflowContext[Any]) -> Any:
        calls.append(ctx.step_name)
        return Flux.wait("ok")

    flow = create_workflow("race").step("ask", ask)
    engine = FluxEngine()

    async def scenario() -> Any:
        assert (await engine.execute(flow, {}, id="r")).status == "suspended"
        stale = await engine.storage.load_run("r")
        assert stale is not None
        stale.status = RunStatus.RUNNING  # what a process saw before the run suspended
        stale.lease = None
        return await engine._continue(flow, stale, reason="execute")

    result = asyncio.run(scenario())
    assert result.status == "suspended" and calls == ["ask"]
    stored = asyncio.run(engine.storage.load_run("r"))
    assert stored is not None and stored.lease is None


def test_recover_finishes_every_orphan_of_several_workflows_past_one_page(tmp_path: Path) -> None:
    """More orphans than one listing page, in two workflows: recovering some must not make
    the listing skip others."""
    from flux import SQLiteStorage
    from flux.records import Lease

    calls: Counter[str] = Counter()

    def step(ctx: WorkflowContext[Any]) -> None:
        calls[ctx.id] += 1

    flows = [create_workflow(f"wf{k}").step("a", step) for k in range(2)]

    async def scenario() -> list[str]:
        storage = SQLiteStorage(tmp_path / "r.db")
        dead = FluxEngine(storage=storage)
        for k, flow in enumerate(flows):
            for i in range(230):
                await dead.start(flow, {}, id=f"{k}-{i}")
        # leave them all "running" under a lease that expired long ago
        for run in await storage.list_runs(limit=1000):
            run.status = RunStatus.RUNNING
            run.rev += 1
            await storage.save_run(run, [], None)
            await storage.acquire_lease(run.id, Lease("gone", "far-host", 1, 0.0))
        heir = FluxEngine(storage=storage)
        results = await heir.recover(flows)
        await heir.close()
        return sorted(r.id for r in results if r.status == "completed")

    done = asyncio.run(scenario())
    assert len(done) == 460 and set(calls.values()) == {1}
