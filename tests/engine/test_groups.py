"""Parallel groups and maps (SPEC §11): concurrency proven, data merge, failure, saga order,
retries, bad input. Real SQLite files; the memory storage where storage does not matter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flux import (
    FluxEngine,
    FluxSilentLogger,
    RunStatus,
    SQLiteStorage,
    StepStatus,
    WorkflowContext,
    WorkflowDefinitionError,
    commit,
    create_workflow,
    step,
)
from flux.trace import MemoryTraceSink

Ctx = WorkflowContext[Any]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FluxEngine]:
    engine = FluxEngine(SQLiteStorage(tmp_path / "flux.db"), logger=FluxSilentLogger(), default_retries=0)
    yield engine
    asyncio.run(engine.close())


def run(coro: Any) -> Any:
    # a guard against a hang if the members were run one after the other (a deadlock)
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_two_async_branches_each_waiting_for_the_other_run_at_once(engine: FluxEngine) -> None:
    events: dict[str, asyncio.Event] = {}

    async def ping(ctx: Ctx) -> str:
        events["ping"].set()
        await events["pong"].wait()
        return "ping"

    async def pong(ctx: Ctx) -> str:
        events["pong"].set()
        await events["ping"].wait()
        return "pong"

    flow = create_workflow("both").parallel("g", step("ping", ping), step("pong", pong))

    async def main() -> Any:
        events.update(ping=asyncio.Event(), pong=asyncio.Event())
        return await engine.execute(flow, {})

    result = run(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["g"] == {"ping": "ping", "pong": "pong"}
    assert result.outputs["ping"] == "ping"


def test_two_sync_branches_run_on_threads_at_once(engine: FluxEngine) -> None:
    barrier = threading.Barrier(2, timeout=30)  # one branch alone breaks it

    def meet(ctx: Ctx) -> str:
        barrier.wait()
        return threading.current_thread().name

    flow = create_workflow("threads").parallel("g", step("a", meet), step("b", meet))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["a"] != result.outputs["b"]


def test_branches_see_the_data_of_the_group_start_and_their_changes_are_merged(engine: FluxEngine) -> None:
    def a(ctx: Ctx) -> None:
        assert "b" not in ctx.data
        ctx.data["a"] = ctx.data["n"] + 1

    def b(ctx: Ctx) -> None:
        assert "a" not in ctx.data
        ctx.data["b"] = ctx.data["n"] + 2
        del ctx.data["gone"]

    def start(ctx: Ctx) -> None:
        ctx.data.update(n=1, gone=True)

    flow = create_workflow("merge").step("start", start).parallel("g", step("a", a), step("b", b))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.data == {"n": 1, "a": 2, "b": 3}


def test_two_branches_changing_one_key_fail_the_group_naming_both_and_the_key(engine: FluxEngine) -> None:
    def a(ctx: Ctx) -> None:
        ctx.data["total"] = 1

    def b(ctx: Ctx) -> None:
        ctx.data["total"] = 2

    flow = create_workflow("clash").parallel("g", step("a", a), step("b", b))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    assert result.error_type == "WorkflowDefinitionError"
    error = result.error or ""
    assert "'a'" in error and "'b'" in error and "'total'" in error
    assert result.data == {}  # nothing of the clash is kept


def test_a_branch_failing_cancels_the_running_one_and_the_saga_undoes_the_rest_latest_first(
    engine: FluxEngine,
) -> None:
    undone: list[str] = []
    cancelled = threading.Event()

    def undo(ctx: Ctx) -> None:
        undone.append(ctx.step_name)

    async def quick(ctx: Ctx) -> str:
        return "ok"

    async def slow(ctx: Ctx) -> str:
        try:
            await asyncio.Event().wait()  # never ends on its own
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def bad(ctx: Ctx) -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        raise ValueError("fraud score too high")

    flow = (
        create_workflow("saga")
        .step("first", lambda ctx: 1, compensate=undo)
        .parallel(
            "g",
            step("quick", quick, compensate=undo),
            step("slow", slow, compensate=undo),
            step("bad", bad, compensate=undo),
        )
        .step("never", lambda ctx: 2)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.ROLLED_BACK
    assert cancelled.is_set()
    assert undone == ["quick", "first"]  # the latest completed first; slow and bad never completed
    steps = {s.name: s.status for s in result.history}
    assert steps["slow"] is StepStatus.CANCELLED
    assert steps["bad"] is StepStatus.FAILED
    assert steps["never"] is StepStatus.PENDING
    assert "fraud score too high" in (result.error or "")


def test_a_branch_is_retried_on_its_own(engine: FluxEngine) -> None:
    tries: dict[str, int] = {"flaky": 0, "steady": 0}

    def flaky(ctx: Ctx) -> int:
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise ConnectionError("try again")
        return tries["flaky"]

    def steady(ctx: Ctx) -> int:
        tries["steady"] += 1
        return 1

    from flux import Backoff

    quick = Backoff(initial=0.001, factor=1, max=0.001, jitter=0)
    flow = create_workflow("retry").parallel(
        "g", step("flaky", flaky, retries=2, backoff=quick), step("steady", steady)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert tries == {"flaky": 3, "steady": 1}


def test_a_commit_branch_start_is_stored_before_it_runs(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "c.db")
    engine = FluxEngine(storage, logger=FluxSilentLogger())
    seen: list[StepStatus] = []

    async def charge(ctx: Ctx) -> str:
        stored = await storage.load_run(ctx.id)
        assert stored is not None
        seen.append(next(s.status for s in stored.steps if s.name == "charge"))
        return "charged"

    flow = create_workflow("pay").parallel("g", commit("charge", charge), step("mail", lambda ctx: 1))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert seen == [StepStatus.RUNNING]


def test_a_map_runs_at_most_max_concurrency_items_at_once_and_keeps_item_order(engine: FluxEngine) -> None:
    now = {"running": 0, "most": 0}

    async def handle(ctx: Ctx) -> str:
        now["running"] += 1
        now["most"] = max(now["most"], now["running"])
        for _ in range(3):
            await asyncio.sleep(0)
        now["running"] -= 1
        assert ctx.item_index is not None
        return f"{ctx.item}-{ctx.item_index}"

    flow = create_workflow("m").map("each", handle, items=lambda ctx: list("abcdefghij"), max_concurrency=3)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["each"] == [f"{c}-{i}" for i, c in enumerate("abcdefghij")]
    assert now["most"] == 3


def test_an_empty_map_completes_with_an_empty_list(engine: FluxEngine) -> None:
    flow = create_workflow("m0").map("each", lambda ctx: 1, items=lambda ctx: []).step("after", lambda ctx: 2)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["each"] == []


def test_a_failed_item_compensates_the_completed_items_and_steps(engine: FluxEngine) -> None:
    undone: list[Any] = []

    def handle(ctx: Ctx) -> int:
        if ctx.item == 3:
            raise RuntimeError("item 3 is broken")
        return int(ctx.item)

    def undo(ctx: Ctx) -> None:
        undone.append(ctx.item if ctx.item is not None else ctx.step_name)

    flow = (
        create_workflow("msaga")
        .step("first", lambda ctx: 0, compensate=undo)
        .map("each", handle, items=lambda ctx: [0, 1, 2, 3], max_concurrency=1, compensate=undo)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.ROLLED_BACK
    assert undone == [2, 1, 0, "first"]


@pytest.mark.parametrize(
    ("items", "words"),
    [({"a": 1}, "must return a list, got dict"), (list(range(11)), "more than max_map_items=10")],
)
def test_bad_items_fail_the_map_step_naming_it(tmp_path: Path, items: Any, words: str) -> None:
    engine = FluxEngine(SQLiteStorage(tmp_path / "i.db"), logger=FluxSilentLogger(), max_map_items=10)
    flow = create_workflow("bad").map("each", lambda ctx: 1, items=lambda ctx: items)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    assert result.failed_step == "each"
    assert words in (result.error or "") and "'each'" in (result.error or "")
    assert [s.name for s in result.history] == ["each"]  # no item records half-stored


def test_a_branch_that_waits_for_a_signal_fails_with_a_clear_error(engine: FluxEngine) -> None:
    from flux import Flux

    flow = create_workflow("w").parallel("g", step("a", lambda ctx: Flux.wait("x")), step("b", lambda ctx: 1))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    assert "Flux.wait cannot be used in a branch" in (result.error or "")


def test_member_events_carry_their_group_and_item(tmp_path: Path) -> None:
    sink = MemoryTraceSink()
    engine = FluxEngine(SQLiteStorage(tmp_path / "t.db"), logger=FluxSilentLogger(), trace=sink)
    flow = (
        create_workflow("traced")
        .parallel("g", step("a", lambda ctx: 1), step("b", lambda ctx: 2))
        .map("m", lambda ctx: ctx.item, items=lambda ctx: [7, 8])
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    done = [e for e in sink.events if e["type"] == "step:complete"]
    tags = {e["stepName"]: (e.get("group"), e.get("item")) for e in done}
    assert tags == {
        "a": ("g", None),
        "b": ("g", None),
        "g": (None, None),
        "m[0]": ("m", 0),
        "m[1]": ("m", 1),
        "m": (None, None),
    }


def test_cancelling_a_run_stops_its_running_branches(engine: FluxEngine) -> None:
    started = asyncio.Event()

    async def forever(ctx: Ctx) -> None:
        started.set()
        await asyncio.Event().wait()

    flow = create_workflow("stop").parallel("g", step("a", forever), step("b", forever))

    async def main() -> Any:
        task = asyncio.ensure_future(engine.execute(flow, {}, id="stop-1"))
        await started.wait()
        await engine.cancel("stop-1", reason="enough")
        return await task

    result = run(main())
    assert result.status is RunStatus.CANCELLED
    assert {s.name: s.status for s in result.history}["a"] is StepStatus.CANCELLED


def test_bad_definitions_are_refused_where_written() -> None:
    base = create_workflow("defs").step("x", lambda ctx: 1)
    with pytest.raises(WorkflowDefinitionError, match="at least one branch"):
        base.parallel("g")
    with pytest.raises(WorkflowDefinitionError, match="already exists"):
        base.parallel("g", step("x", lambda ctx: 1))
    with pytest.raises(WorkflowDefinitionError, match="already exists"):
        base.parallel("g", step("a", lambda ctx: 1), step("a", lambda ctx: 1))
    with pytest.raises(WorkflowDefinitionError, match=r"flux\.step"):
        base.parallel("g", lambda ctx: 1)  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="max_concurrency"):
        base.map("m", lambda ctx: 1, items=lambda ctx: [], max_concurrency=0)
    with pytest.raises(WorkflowDefinitionError, match="items must be a function"):
        base.map("m", lambda ctx: 1, items=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="needs a workflow"):
        base.call("c", "other")  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="cannot call itself"):
        base.call("c", create_workflow("defs"))
    grouped = base.parallel("g", step("a", lambda ctx: 1))
    with pytest.raises(WorkflowDefinitionError, match="already exists"):
        grouped.step("a", lambda ctx: 1)


def test_resuming_a_failed_group_runs_only_its_unfinished_members(engine: FluxEngine) -> None:
    calls: list[str] = []
    broken = {"yes": True}

    def charge(ctx: Ctx) -> str:
        calls.append("charge")
        return "charged"

    def ship(ctx: Ctx) -> str:
        calls.append("ship")
        if broken["yes"]:
            raise RuntimeError("carrier down")
        return "shipped"

    flow = create_workflow("resume-g").parallel("g", commit("charge", charge), step("ship", ship))

    async def main() -> Any:
        first = await engine.execute(flow, {}, id="rg-1")
        assert first.status is RunStatus.FAILED
        broken["yes"] = False
        return await engine.resume(flow, "rg-1")

    result = run(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert calls == ["charge", "ship", "ship"]  # the commit once
    assert result.outputs["g"] == {"charge": "charged", "ship": "shipped"}


def test_retry_step_of_a_branch_runs_its_whole_group_again(engine: FluxEngine) -> None:
    calls: list[str] = []

    def member(ctx: Ctx) -> str:
        calls.append(ctx.step_name)
        return ctx.step_name

    flow = create_workflow("retry-g").parallel("g", step("a", member), step("b", member)).step("z", member)

    async def main() -> Any:
        await engine.execute(flow, {}, id="rt-1")
        return await engine.retry_step(flow, "rt-1", "b")

    result = run(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert sorted(calls) == ["a", "a", "b", "b", "z", "z"]


def test_a_map_retried_from_an_earlier_step_asks_for_its_items_again(engine: FluxEngine) -> None:
    sizes = iter([3, 2])

    flow = (
        create_workflow("retry-m")
        .step("first", lambda ctx: 1)
        .map("each", lambda ctx: ctx.item, items=lambda ctx: list(range(next(sizes))))
    )

    async def main() -> Any:
        await engine.execute(flow, {}, id="rm-1")
        return await engine.retry_step(flow, "rm-1", "first")

    result = run(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["each"] == [0, 1]
    stored = asyncio.run(engine.storage.load_run("rm-1"))
    assert stored is not None
    assert [s.name for s in stored.steps] == ["first", "each", "each[0]", "each[1]"]  # no stale item rows


def test_a_changed_branch_after_it_ran_is_a_version_error(engine: FluxEngine) -> None:
    from flux import Flux, WorkflowVersionError

    old = (
        create_workflow("ver")
        .parallel("g", step("a", lambda ctx: 1), step("b", lambda ctx: 2))
        .step("wait", lambda ctx: Flux.wait("go"))
    )
    new = (
        create_workflow("ver")
        .parallel("g", step("a", lambda ctx: 1), step("c", lambda ctx: 2))
        .step("wait", lambda ctx: Flux.wait("go"))
    )

    async def main() -> Any:
        first = await engine.execute(old, {}, id="v-1")
        assert first.status is RunStatus.SUSPENDED
        with pytest.raises(WorkflowVersionError, match="'b'"):
            await engine.signal(new, "v-1", "go", None)
        return await engine.signal(old, "v-1", "go", None)

    assert run(main()).status is RunStatus.COMPLETED
