"""An adversarial review of `.parallel` and `.map` (SPEC §5, §9, §11): what a demanding user
would try. Real SQLite files (and the real PostgreSQL where storage matters). A test marked
xfail(strict) is a promise broken on main; its reason says what."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from flux import (
    Backoff,
    FluxEngine,
    FluxSilentLogger,
    RunStatus,
    SQLiteStorage,
    StepStatus,
    WorkflowContext,
    commit,
    create_workflow,
    step,
)
from flux.trace import MemoryTraceSink

from ..services import postgres_url_or_skip

Ctx = WorkflowContext[Any]
QUICK = Backoff(initial=0.001, factor=1, max=0.001, jitter=0)


def make(tmp_path: Path, **kw: Any) -> FluxEngine:
    kw.setdefault("default_retries", 0)
    return FluxEngine(SQLiteStorage(tmp_path / "flux.db"), logger=FluxSilentLogger(), **kw)


@pytest.fixture
def engine(tmp_path: Path) -> FluxEngine:
    return make(tmp_path)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def statuses(result: Any) -> dict[str, StepStatus]:
    return {s.name: s.status for s in result.history}


# ---------------------------------------------------------------- sync and async side by side


def test_a_blocking_sync_branch_does_not_block_its_async_sibling(engine: FluxEngine) -> None:
    sibling_done = threading.Event()

    def blocking(ctx: Ctx) -> str:
        # blocks its thread until the async sibling has run to its end on the loop
        assert sibling_done.wait(30), "the async sibling never ran while this one blocked"
        return "sync"

    async def sibling(ctx: Ctx) -> str:
        for _ in range(3):
            await asyncio.sleep(0)
        sibling_done.set()
        return "async"

    flow = create_workflow("block").parallel("g", step("blocking", blocking), step("sibling", sibling))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["g"] == {"blocking": "sync", "sibling": "async"}


def test_a_blocking_sync_map_item_does_not_block_the_other_items(engine: FluxEngine) -> None:
    others = threading.Event()
    seen: list[int] = []

    def handle(ctx: Ctx) -> int:
        assert ctx.item_index is not None
        if ctx.item == 0:
            assert others.wait(30)
        else:
            seen.append(ctx.item)
            if len(seen) == 3:
                others.set()
        return int(ctx.item)

    flow = create_workflow("mblock").map("each", handle, items=lambda ctx: [0, 1, 2, 3], max_concurrency=2)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["each"] == [0, 1, 2, 3]


# ---------------------------------------------------------------- timeouts


def test_an_async_branch_is_cancelled_at_its_timeout_and_its_late_code_never_runs(engine: FluxEngine) -> None:
    after: list[str] = []

    async def slow(ctx: Ctx) -> str:
        ctx.data["slow"] = "early"
        await asyncio.Event().wait()
        after.append("ran on")  # never
        return "late"

    flow = create_workflow("tmo").parallel("g", step("slow", slow, timeout=0.05), step("ok", lambda ctx: 1))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    assert result.error_type == "StepTimeoutError"
    assert "'slow'" in (result.error or "")
    assert after == []
    assert "slow" not in result.data
    assert statuses(result)["slow"] is StepStatus.FAILED


def test_a_sync_branch_sees_cancelled_at_its_timeout_and_its_late_writes_are_discarded(
    engine: FluxEngine,
) -> None:
    noticed = threading.Event()
    release = threading.Event()

    def slow(ctx: Ctx) -> str:
        while not ctx.cancelled:
            release.wait(0.005)
        noticed.set()
        ctx.data["late"] = True
        return "late"

    flow = create_workflow("stmo").parallel("g", step("slow", slow, timeout=0.05), step("ok", lambda ctx: 1))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    assert result.error_type == "StepTimeoutError"
    assert noticed.wait(30)
    assert "late" not in result.data
    assert "slow" not in result.outputs


def test_a_timed_out_item_is_retried_and_its_late_result_is_discarded(engine: FluxEngine) -> None:
    tries: dict[int, int] = {}

    async def handle(ctx: Ctx) -> str:
        n = tries[ctx.item] = tries.get(ctx.item, 0) + 1
        if ctx.item == 1 and n == 1:
            await asyncio.Event().wait()  # the first attempt of item 1 hangs
        return f"{ctx.item}:{n}"

    flow = create_workflow("itmo").map(
        "each", handle, items=lambda ctx: [0, 1, 2], timeout=0.05, retries=1, backoff=QUICK
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["each"] == ["0:1", "1:2", "2:1"]


def test_a_sync_retry_never_overlaps_its_abandoned_attempt(engine: FluxEngine) -> None:
    running = {"now": 0, "most": 0}
    lock = threading.Lock()
    attempts = {"n": 0}

    def slow(ctx: Ctx) -> str:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
            attempts["n"] += 1
            n = attempts["n"]
        try:
            if n == 1:
                while not ctx.cancelled:
                    threading.Event().wait(0.005)
                threading.Event().wait(0.05)  # goes on a little after its timeout
            return f"try {n}"
        finally:
            with lock:
                running["now"] -= 1

    flow = create_workflow("overlap").parallel(
        "g", step("slow", slow, timeout=0.05, retries=1, backoff=QUICK), step("ok", lambda ctx: 1)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["slow"] == "try 2"
    assert running["most"] == 1


# ---------------------------------------------------------------- cancel and deadline


def test_a_cancel_stops_a_map_with_max_concurrency_and_starts_no_further_item(engine: FluxEngine) -> None:
    started: list[int] = []
    two = asyncio.Event()
    undone: list[int] = []

    async def handle(ctx: Ctx) -> int:
        started.append(ctx.item)
        if ctx.item < 2:
            return int(ctx.item)
        if len(started) >= 4:
            two.set()
        await asyncio.Event().wait()
        return -1

    def undo(ctx: Ctx) -> None:
        undone.append(ctx.item)

    flow = create_workflow("mcancel").map(
        "each", handle, items=lambda ctx: list(range(20)), max_concurrency=2, compensate=undo
    )

    async def main() -> Any:
        task = asyncio.ensure_future(engine.execute(flow, {}, id="mc-1"))
        await two.wait()
        await engine.cancel("mc-1", reason="stop it")
        return await task

    result = run(main())
    assert result.status is RunStatus.CANCELLED
    assert "stop it" in (result.error or "")
    assert sorted(started) == [0, 1, 2, 3]  # nothing after the cancel
    assert sorted(undone, reverse=True) == undone == [1, 0]
    st = statuses(result)
    assert st["each[2]"] is StepStatus.CANCELLED and st["each[3]"] is StepStatus.CANCELLED
    assert st["each[4]"] is StepStatus.PENDING


def test_a_deadline_in_the_middle_of_a_group_cancels_the_branches_and_compensates(tmp_path: Path) -> None:
    engine = make(tmp_path)
    undone: list[str] = []
    cancelled = threading.Event()

    def undo(ctx: Ctx) -> None:
        undone.append(ctx.step_name)

    def sync_slow(ctx: Ctx) -> str:
        while not ctx.cancelled:
            threading.Event().wait(0.005)
        cancelled.set()
        return "late"

    async def async_slow(ctx: Ctx) -> str:
        await asyncio.Event().wait()
        return "never"

    flow = (
        create_workflow("dl")
        .deadline(0.3)
        .step("first", lambda ctx: 1, compensate=undo)
        .parallel(
            "g",
            step("quick", lambda ctx: 2, compensate=undo),
            step("sync_slow", sync_slow, compensate=undo),
            step("async_slow", async_slow, compensate=undo),
        )
        .step("never", lambda ctx: 3)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.CANCELLED, result.error
    assert "deadline" in (result.error or "")
    assert cancelled.wait(30)  # the abandoned sync branch saw ctx.cancelled
    assert undone == ["quick", "first"]
    st = statuses(result)
    assert st["sync_slow"] is StepStatus.CANCELLED and st["async_slow"] is StepStatus.CANCELLED
    assert st["never"] is StepStatus.PENDING


def test_a_cancel_during_a_branch_backoff_ends_the_run_without_another_attempt(engine: FluxEngine) -> None:
    tries = {"n": 0}
    failed_once = threading.Event()

    def flaky(ctx: Ctx) -> str:
        tries["n"] += 1
        failed_once.set()
        raise ConnectionError("down")

    async def watcher(ctx: Ctx) -> str:
        await asyncio.Event().wait()
        return "never"

    slow = Backoff(initial=30, factor=1, max=30, jitter=0)
    flow = create_workflow("bcancel").parallel(
        "g", step("flaky", flaky, retries=5, backoff=slow), step("watcher", watcher)
    )

    async def main() -> Any:
        task = asyncio.ensure_future(engine.execute(flow, {}, id="bc-1"))
        await asyncio.to_thread(failed_once.wait, 30)
        await engine.cancel("bc-1", reason="no more")
        return await task

    result = run(main())
    assert result.status is RunStatus.CANCELLED
    assert tries["n"] == 1
    st = statuses(result)
    assert st["flaky"] is StepStatus.CANCELLED and st["watcher"] is StepStatus.CANCELLED


# ---------------------------------------------------------------- saga order


def test_compensation_follows_completion_order_across_a_group_and_a_map(engine: FluxEngine) -> None:
    undone: list[str] = []
    gates = {n: asyncio.Event() for n in ("a", "b", "c")}

    def undo(ctx: Ctx) -> None:
        undone.append(ctx.step_name if ctx.item is None else f"item{ctx.item}")

    async def branch(ctx: Ctx) -> str:
        await gates[ctx.step_name].wait()
        nxt = {"c": "a", "a": "b"}.get(ctx.step_name)  # completion order: c, a, b
        if nxt:
            gates[nxt].set()
        return ctx.step_name

    async def opener(ctx: Ctx) -> None:
        gates["c"].set()

    def item(ctx: Ctx) -> int:
        if ctx.item == 2:
            raise RuntimeError("item 2 broken")
        return int(ctx.item)

    flow = (
        create_workflow("order")
        .step("first", opener, compensate=undo)
        .parallel(
            "g",
            step("a", branch, compensate=undo),
            step("b", branch, compensate=undo),
            step("c", branch, compensate=undo),
        )
        .map("m", item, items=lambda ctx: [0, 1, 2], max_concurrency=1, compensate=undo)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.ROLLED_BACK, result.error
    assert undone == ["item1", "item0", "b", "a", "c", "first"]


def test_a_failing_branch_compensation_ends_rollback_failed_and_the_others_still_run(
    engine: FluxEngine,
) -> None:
    undone: list[str] = []

    def undo(ctx: Ctx) -> None:
        undone.append(ctx.step_name)

    def bad_undo(ctx: Ctx) -> None:
        raise RuntimeError("cannot release the stock")

    def boom(ctx: Ctx) -> None:
        raise RuntimeError("charge declined")

    flow = (
        create_workflow("cfail")
        .step("first", lambda ctx: 1, compensate=undo)
        .parallel(
            "g",
            step("stock", lambda ctx: 2, compensate=bad_undo),
            step("mail", lambda ctx: 3, compensate=undo),
        )
        .step("charge", boom)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.ROLLBACK_FAILED
    st = statuses(result)
    assert st["stock"] is StepStatus.COMPENSATION_FAILED
    assert "first" in undone and "mail" in undone


def test_a_map_item_compensation_sees_its_item_and_output(engine: FluxEngine) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    def undo(ctx: Ctx) -> None:
        seen.append((ctx.item, ctx.item_index, ctx.outputs.get(ctx.step_name)))

    def boom(ctx: Ctx) -> None:
        raise RuntimeError("later failure")

    flow = (
        create_workflow("mundo")
        .map(
            "m",
            lambda ctx: {"v": ctx.item["v"] * 2},
            items=lambda ctx: [{"v": 1}, {"v": 2}],
            max_concurrency=1,
            compensate=undo,
        )
        .step("fail", boom)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.ROLLED_BACK
    assert [(i, k) for i, k, _ in seen] == [({"v": 2}, 1), ({"v": 1}, 0)]


# ---------------------------------------------------------------- the merge rule


def _merge_flow(a: Any, b: Any) -> Any:
    def start(ctx: Ctx) -> None:
        ctx.data.update(cfg={"x": 1, "y": 1}, keep=1, flag=1, gone="yes")

    return create_workflow("merge").step("start", start).parallel("g", step("a", a), step("b", b))


def test_two_branches_changing_different_nested_keys_of_one_key_clash_on_it(engine: FluxEngine) -> None:
    def a(ctx: Ctx) -> None:
        ctx.data["cfg"]["x"] = 2

    def b(ctx: Ctx) -> None:
        ctx.data["cfg"]["y"] = 2

    result = run(engine.execute(_merge_flow(a, b), {}))
    assert result.status is RunStatus.FAILED
    assert result.error_type == "WorkflowDefinitionError"
    assert "'cfg'" in (result.error or "")
    assert result.data["cfg"] == {"x": 1, "y": 1}


def test_a_key_deleted_by_one_branch_and_set_by_the_other_clashes(engine: FluxEngine) -> None:
    def a(ctx: Ctx) -> None:
        del ctx.data["gone"]

    def b(ctx: Ctx) -> None:
        ctx.data["gone"] = "changed"

    result = run(engine.execute(_merge_flow(a, b), {}))
    assert result.status is RunStatus.FAILED
    assert (
        "'gone'" in (result.error or "") and "'a'" in (result.error or "") and "'b'" in (result.error or "")
    )
    assert result.data["gone"] == "yes"


def test_a_branch_that_replaces_ctx_data_is_merged_as_its_changes(engine: FluxEngine) -> None:
    def a(ctx: Ctx) -> None:
        ctx.data = {"cfg": {"x": 1, "y": 1}, "keep": 1, "flag": 1, "gone": "yes", "new": "a"}

    def b(ctx: Ctx) -> None:
        ctx.data["other"] = "b"

    result = run(engine.execute(_merge_flow(a, b), {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.data == {
        "cfg": {"x": 1, "y": 1},
        "keep": 1,
        "flag": 1,
        "gone": "yes",
        "new": "a",
        "other": "b",
    }


def test_a_branch_that_sets_ctx_data_to_a_non_dict_fails_naming_it(engine: FluxEngine) -> None:
    def a(ctx: Ctx) -> None:
        ctx.data = [1, 2]  # type: ignore[assignment]

    result = run(engine.execute(_merge_flow(a, lambda ctx: None), {}))
    assert result.status is RunStatus.FAILED
    assert "must stay a dict" in (result.error or "") and "'a'" in (result.error or "")
    assert result.data["keep"] == 1


@pytest.mark.parametrize(("old", "new"), [(1, True), (0, False), (1, 1.0)])
def test_a_branch_changing_a_value_to_an_equal_value_of_another_type_is_kept(
    engine: FluxEngine, old: Any, new: Any
) -> None:
    def start(ctx: Ctx) -> None:
        ctx.data["flag"] = old

    def a(ctx: Ctx) -> None:
        ctx.data["flag"] = new

    flow = create_workflow("eq").step("start", start).parallel("g", step("a", a), step("b", lambda ctx: 1))
    sequential = create_workflow("eq-seq").step("start", start).step("a", a)
    seq = run(engine.execute(sequential, {}))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert type(seq.data["flag"]) is type(new)
    assert type(result.data["flag"]) is type(new)  # what the same step run alone would leave


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (object(), "data"),
        ({1, 2}, "data"),
        (float("nan"), "data"),
    ],
)
def test_a_branch_writing_a_non_json_value_fails_naming_the_step_and_nothing_is_stored(
    engine: FluxEngine, value: Any, words: str
) -> None:
    def a(ctx: Ctx) -> None:
        ctx.data["bad"] = value

    result = run(engine.execute(_merge_flow(a, lambda ctx: None), {}))
    assert result.status is RunStatus.FAILED
    assert result.failed_step in ("a", "g")
    assert "'a'" in (result.error or "") and words in (result.error or "")
    assert "bad" not in result.data
    stored = run(engine.get(result.id))
    assert stored is not None and "bad" not in stored.data


@pytest.mark.parametrize(
    "key",
    ["nul\x00key", "lone\ud800surrogate", 7, None, ("a", "b")],
    ids=["nul", "surrogate", "int", "none", "tuple"],
)
def test_a_branch_writing_a_hostile_key_fails_clearly_or_round_trips(engine: FluxEngine, key: Any) -> None:
    def a(ctx: Ctx) -> None:
        ctx.data[key] = "v"

    result = run(engine.execute(_merge_flow(a, lambda ctx: None), {}))
    stored = run(engine.get(result.id))
    assert stored is not None
    if result.status is RunStatus.COMPLETED:
        # kept: then what is read back is what the run returned
        assert stored.data == result.data
    else:
        assert result.status is RunStatus.FAILED
        assert "'a'" in (result.error or "")
        assert stored.data == {"cfg": {"x": 1, "y": 1}, "keep": 1, "flag": 1, "gone": "yes"}


def test_a_non_string_key_set_by_a_branch_clashes_with_its_string_twin(engine: FluxEngine) -> None:
    def a(ctx: Ctx) -> None:
        ctx.data[1] = "int"  # type: ignore[index]

    def b(ctx: Ctx) -> None:
        ctx.data["1"] = "str"

    result = run(engine.execute(create_workflow("twin").parallel("g", step("a", a), step("b", b)), {}))
    stored = run(engine.get(result.id))
    assert stored is not None
    # either refused, or one of the two wins silently: the latter is a lost write
    assert result.status is RunStatus.FAILED, (result.data, stored.data)


def test_a_huge_int_written_by_a_branch_round_trips_or_fails_clearly(engine: FluxEngine) -> None:
    big = 10**400

    def a(ctx: Ctx) -> None:
        ctx.data["big"] = big

    result = run(
        engine.execute(create_workflow("big").parallel("g", step("a", a), step("b", lambda ctx: 1)), {})
    )
    stored = run(engine.get(result.id))
    assert stored is not None
    if result.status is RunStatus.COMPLETED:
        assert stored.data["big"] == big
    else:
        assert "'a'" in (result.error or "") and "big" not in stored.data


# ---------------------------------------------------------------- when and hooks


def test_a_skipped_branch_is_not_in_the_group_outputs_and_its_sibling_runs(engine: FluxEngine) -> None:
    calls: list[str] = []

    def member(ctx: Ctx) -> str:
        calls.append(ctx.step_name)
        return ctx.step_name

    async def later(ctx: Ctx) -> bool:
        return True

    flow = create_workflow("when").parallel(
        "g",
        step("skip", member, when=lambda ctx: False),
        step("go", member, when=later),  # type: ignore[arg-type]
        step("plain", member),
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["g"] == {"go": "go", "plain": "plain"}
    assert "skip" not in result.outputs
    assert sorted(calls) == ["go", "plain"]
    assert statuses(result)["skip"] is StepStatus.SKIPPED


def test_a_when_that_raises_fails_its_branch_and_interrupts_the_siblings(engine: FluxEngine) -> None:
    async def forever(ctx: Ctx) -> None:
        await asyncio.Event().wait()

    def bad_when(ctx: Ctx) -> bool:
        raise KeyError("route")

    flow = create_workflow("whenerr").parallel(
        "g", step("forever", forever), step("w", lambda ctx: 1, when=bad_when)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    assert "route" in (result.error or "")
    assert statuses(result)["forever"] is StepStatus.CANCELLED


def test_a_commit_branch_with_a_when_stores_its_start_before_it_runs(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "w.db")
    engine = FluxEngine(storage, logger=FluxSilentLogger())
    seen: list[StepStatus] = []

    async def charge(ctx: Ctx) -> str:
        stored = await storage.load_run(ctx.id)
        assert stored is not None
        seen.append(next(s.status for s in stored.steps if s.name == "charge"))
        return "charged"

    flow = create_workflow("wc").parallel(
        "g",
        step("mail", lambda ctx: 1),
        commit("charge", charge, when=lambda ctx: True),
        step("x", lambda ctx: 2),
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert seen == [StepStatus.RUNNING]


def test_hooks_see_each_branch_start_complete_with_its_output_and_error(tmp_path: Path) -> None:
    seen: list[tuple[str, str, Any]] = []

    def on_start(name: str, ctx: Ctx) -> None:
        seen.append(("start", name, None))

    def on_complete(name: str, ctx: Ctx, output: Any) -> None:
        seen.append(("complete", name, output))

    def on_error(name: str, ctx: Ctx, error: BaseException) -> None:
        seen.append(("error", name, str(error)))

    engine = make(tmp_path, on={"step_start": on_start, "step_complete": on_complete, "step_error": on_error})
    flow = create_workflow("hooks").parallel("g", step("a", lambda ctx: "A"), step("b", lambda ctx: "B"))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert sorted(x for x in seen if x[0] == "start") == [("start", "a", None), ("start", "b", None)]
    done = {name: out for kind, name, out in seen if kind == "complete"}
    assert done["g"] == {"a": "A", "b": "B"}
    assert set(done) == {"a", "b", "g"}


def test_the_step_complete_hook_of_a_branch_gets_its_output(tmp_path: Path) -> None:
    done: dict[str, Any] = {}

    def on_complete(name: str, ctx: Ctx, output: Any) -> None:
        done[name] = output

    engine = make(tmp_path, on={"step_complete": on_complete})
    flow = create_workflow("hooks2").parallel("g", step("a", lambda ctx: "A"), step("b", lambda ctx: "B"))
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert done == {"a": "A", "b": "B", "g": {"a": "A", "b": "B"}}


def test_hooks_for_map_items_are_consistent(tmp_path: Path) -> None:
    """step_start / step_complete are not called for items; step_error should not be either."""
    seen: list[tuple[str, str]] = []
    engine = make(
        tmp_path,
        on={
            "step_start": lambda name, ctx: seen.append(("start", name)),
            "step_complete": lambda name, ctx, out: seen.append(("complete", name)),
            "step_error": lambda name, ctx, err: seen.append(("error", name)),
        },
    )

    def handle(ctx: Ctx) -> int:
        if ctx.item == 1:
            raise RuntimeError("bad item")
        return int(ctx.item)

    flow = create_workflow("ihooks").map("m", handle, items=lambda ctx: [0, 1], max_concurrency=1)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    kinds_for_items = {(k, n) for k, n in seen if n.startswith("m[")}
    starts = {n for k, n in kinds_for_items if k == "start"}
    errors = {n for k, n in kinds_for_items if k == "error"}
    # the hooks either see items (all three kinds) or do not (none)
    assert (not starts and not errors) or (starts and errors), seen


# ---------------------------------------------------------------- map edge cases


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ([1, object()], "each.items"),
        ([float("inf")], "each.items"),
        (["ok", "\ud800"], "each.items"),
        ([{"a": {1, 2}}], "each.items"),
        ((1, 2), "must return a list, got tuple"),
        (None, "must return a list, got NoneType"),
    ],
)
def test_hostile_items_fail_the_map_naming_it_and_store_no_item(
    engine: FluxEngine, items: Any, words: str
) -> None:
    flow = create_workflow("hostile").map("each", lambda ctx: 1, items=lambda ctx: items)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED, result.outputs
    assert result.failed_step == "each"
    assert words in (result.error or ""), result.error
    stored = asyncio.run(engine.storage.load_run(result.id))
    assert stored is not None and [s.name for s in stored.steps] == ["each"]


def test_items_with_awkward_json_values_round_trip_to_the_handler(engine: FluxEngine) -> None:
    items: list[Any] = [None, "", "\x00nul", "é漢😀", 2**62, -0.0, [], {}, {"nested": [1, {"x": None}]}, True]
    seen: list[Any] = []

    def handle(ctx: Ctx) -> Any:
        seen.append(ctx.item)
        return ctx.item

    flow = create_workflow("awk").map("each", handle, items=lambda ctx: items, max_concurrency=1)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert seen == items
    assert result.outputs["each"] == items
    stored = run(engine.get(result.id))
    assert stored is not None and stored.outputs["each"] == items


def test_items_raising_fails_the_map_step_with_the_error(engine: FluxEngine) -> None:
    def items(ctx: Ctx) -> list[int]:
        raise LookupError("catalogue unreachable")

    flow = create_workflow("iraise").step("a", lambda ctx: 1).map("each", lambda ctx: 1, items=items)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    assert result.failed_step == "each"
    assert "catalogue unreachable" in (result.error or "")


def test_async_items_are_awaited(engine: FluxEngine) -> None:
    async def items(ctx: Ctx) -> list[int]:
        await asyncio.sleep(0)
        return [1, 2, 3]

    flow = create_workflow("aitems").map("each", lambda ctx: ctx.item * 2, items=items)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["each"] == [2, 4, 6]


def test_max_concurrency_one_runs_items_in_order_one_at_a_time(engine: FluxEngine) -> None:
    order: list[tuple[str, int]] = []

    async def handle(ctx: Ctx) -> int:
        order.append(("start", ctx.item))
        await asyncio.sleep(0)
        order.append(("end", ctx.item))
        return int(ctx.item)

    flow = create_workflow("one").map("each", handle, items=lambda ctx: list(range(6)), max_concurrency=1)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert order == [(k, i) for i in range(6) for k in ("start", "end")]


def test_each_item_has_its_own_retries(engine: FluxEngine) -> None:
    tries: dict[int, int] = {}

    def handle(ctx: Ctx) -> int:
        tries[ctx.item] = tries.get(ctx.item, 0) + 1
        if tries[ctx.item] <= ctx.item:  # item k fails k times
            raise ConnectionError("again")
        return int(ctx.attempt)

    flow = create_workflow("iretry").map(
        "each", handle, items=lambda ctx: [0, 1, 2], retries=2, backoff=QUICK
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert tries == {0: 1, 1: 2, 2: 3}
    assert result.outputs["each"] == [1, 2, 3]


def test_a_map_as_the_last_step_completes_and_loads_back(engine: FluxEngine) -> None:
    flow = (
        create_workflow("last")
        .step("a", lambda ctx: 1)
        .map("each", lambda ctx: ctx.item + 1, items=lambda ctx: [1, 2])
    )
    result = run(engine.execute(flow, {}, id="last-1"))
    assert result.status is RunStatus.COMPLETED, result.error
    stored = run(engine.get("last-1"))
    assert stored is not None and stored.status is RunStatus.COMPLETED
    assert stored.outputs == {"a": 1, "each": [2, 3]}


def test_two_maps_and_retry_step_of_the_second_keeps_the_first(engine: FluxEngine) -> None:
    calls: dict[str, int] = {"first": 0, "second": 0, "items2": 0}
    broken = {"yes": True}

    def first(ctx: Ctx) -> int:
        calls["first"] += 1
        return int(ctx.item)

    def second(ctx: Ctx) -> int:
        calls["second"] += 1
        if broken["yes"] and ctx.item == 1:
            raise RuntimeError("bad")
        return int(ctx.item) * 10

    def items2(ctx: Ctx) -> list[int]:
        calls["items2"] += 1
        return list(ctx.outputs["m1"])

    flow = (
        create_workflow("twomaps")
        .map("m1", first, items=lambda ctx: [0, 1, 2])
        .map("m2", second, items=items2, max_concurrency=1)
        .step("end", lambda ctx: ctx.outputs["m2"])
    )

    async def main() -> Any:
        one = await engine.execute(flow, {}, id="tm-1")
        assert one.status is RunStatus.FAILED
        broken["yes"] = False
        return await engine.retry_step(flow, "tm-1", "m2")

    result = run(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["m1"] == [0, 1, 2] and result.outputs["m2"] == [0, 10, 20]
    assert result.outputs["end"] == [0, 10, 20]
    assert calls["first"] == 3
    stored = asyncio.run(engine.storage.load_run("tm-1"))
    assert stored is not None
    names = [s.name for s in stored.steps]
    assert len(names) == len(set(names)), names  # no stale or duplicated item rows


def test_resume_after_a_failed_item_runs_only_the_unfinished_items(engine: FluxEngine) -> None:
    calls: list[int] = []
    broken = {"yes": True}

    def handle(ctx: Ctx) -> int:
        calls.append(ctx.item)
        if broken["yes"] and ctx.item == 2:
            raise RuntimeError("bad item")
        return int(ctx.item)

    flow = create_workflow("mresume").map(
        "each", handle, items=lambda ctx: [0, 1, 2, 3, 4], max_concurrency=1
    )

    async def main() -> Any:
        one = await engine.execute(flow, {}, id="mr-1")
        assert one.status is RunStatus.FAILED
        broken["yes"] = False
        return await engine.resume(flow, "mr-1")

    result = run(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["each"] == [0, 1, 2, 3, 4]
    assert calls == [0, 1, 2, 2, 3, 4]


def test_a_map_item_changing_ctx_data_is_merged(engine: FluxEngine) -> None:
    def handle(ctx: Ctx) -> None:
        ctx.data[f"k{ctx.item}"] = ctx.item

    flow = create_workflow("mdata").map("each", handle, items=lambda ctx: [0, 1, 2])
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.data == {"k0": 0, "k1": 1, "k2": 2}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_ten_thousand_items_complete_and_load_back(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    url: Any = SQLiteStorage(tmp_path / "big.db") if backend == "sqlite" else postgres_url_or_skip(request)
    engine = FluxEngine(url, logger=FluxSilentLogger(), default_retries=0)
    n = 10_000

    async def handle(ctx: Ctx) -> int:
        return int(ctx.item) * 2

    flow = (
        create_workflow("big")
        .map("each", handle, items=lambda ctx: list(range(n)), max_concurrency=64)
        .step("sum", lambda ctx: sum(ctx.outputs["each"]))
    )

    async def main() -> Any:
        try:
            result = await engine.execute(flow, {}, id="big-1")
            stored = await engine.get("big-1")
            return result, stored
        finally:
            await engine.close()

    result, stored = asyncio.run(asyncio.wait_for(main(), 300))
    assert result.status is RunStatus.COMPLETED, result.error
    assert stored is not None and stored.status is RunStatus.COMPLETED
    assert stored.outputs["sum"] == n * (n - 1)
    assert stored.outputs["each"][-1] == 2 * (n - 1)
    assert len(stored.outputs["each"]) == n


def test_a_trace_of_a_map_names_every_item_once_per_attempt(tmp_path: Path) -> None:
    sink = MemoryTraceSink()
    engine = make(tmp_path, trace=sink)

    def handle(ctx: Ctx) -> int:
        if ctx.item == 1 and ctx.attempt == 1:
            raise ConnectionError("once")
        return int(ctx.item)

    flow = create_workflow("mtrace").map("each", handle, items=lambda ctx: [0, 1], retries=1, backoff=QUICK)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    starts = [
        (e["stepName"], e["attempt"]) for e in sink.events if e["type"] == "step:start" and e.get("group")
    ]
    assert sorted(starts) == [("each[0]", 1), ("each[1]", 1), ("each[1]", 2)]
    retries = [e for e in sink.events if e["type"] == "step:retry"]
    assert [(e["stepName"], e.get("item"), e.get("group")) for e in retries] == [("each[1]", 1, "each")]


# ---------------------------------------------------------------- a member interrupted before it starts

_NOT_STARTED = (
    "a member spawned and interrupted in one batch is cancelled before it starts: driver .result() raises "
    "CancelledError, execute raises and the run stays running"
)


def test_an_item_failing_while_the_next_one_is_being_started_fails_the_run_cleanly(
    engine: FluxEngine,
) -> None:
    started: list[int] = []

    async def handle(ctx: Ctx) -> int:
        started.append(ctx.item)
        if ctx.item == 1:
            raise RuntimeError("item 1 is broken")
        return int(ctx.item)

    # items 0 and 1 end in one turn of the loop: 0's end starts item 2, 1's failure interrupts it
    flow = create_workflow("nostart").map("each", handle, items=lambda ctx: [0, 1, 2, 3], max_concurrency=2)
    result = run(engine.execute(flow, {}, id="ns-1"))
    assert result.status is RunStatus.FAILED
    assert "item 1 is broken" in (result.error or "")
    stored = run(engine.get("ns-1"))
    assert stored is not None and stored.status is RunStatus.FAILED
    assert 3 not in started


def test_a_branch_failing_while_a_sibling_goes_into_its_backoff_fails_the_run_cleanly(
    engine: FluxEngine,
) -> None:
    async def flaky(ctx: Ctx) -> None:
        raise ConnectionError("try again")

    async def fatal(ctx: Ctx) -> None:
        raise RuntimeError("fatal")

    async def ok(ctx: Ctx) -> int:
        return 1

    # all three end in one turn of the loop: ok's end is saved first, flaky's backoff is
    # spawned, then interrupted by fatal before it starts
    flow = create_workflow("nostart-b").parallel(
        "g", step("ok", ok), step("flaky", flaky, retries=3, backoff=QUICK), step("fatal", fatal)
    )
    result = run(engine.execute(flow, {}, id="nsb-1"))
    assert result.status is RunStatus.FAILED
    assert "fatal" in (result.error or "")
    stored = run(engine.get("nsb-1"))
    assert stored is not None and stored.status is RunStatus.FAILED


# ---------------------------------------------------------------- what a member sees on resume


def test_a_branch_run_again_on_resume_sees_the_outputs_an_uninterrupted_run_sees(engine: FluxEngine) -> None:
    seen: list[list[str]] = []
    broken = {"yes": True}

    def ship(ctx: Ctx) -> str:
        seen.append(sorted(ctx.outputs))
        if broken["yes"]:
            raise RuntimeError("carrier down")
        return "shipped"

    async def charge(ctx: Ctx) -> str:
        return "charged"

    flow = (
        create_workflow("views")
        .step("first", lambda ctx: 1)
        .parallel("g", step("charge", charge), step("ship", ship))
    )

    async def main() -> Any:
        one = await engine.execute(flow, {}, id="vw-1")
        assert one.status is RunStatus.FAILED
        broken["yes"] = False
        return await engine.resume(flow, "vw-1")

    result = run(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert seen[0] == ["first"]
    assert seen[1] == seen[0]  # a resumed run sees exactly what an uninterrupted one sees


def test_a_group_with_every_branch_skipped_completes_with_empty_outputs(engine: FluxEngine) -> None:
    flow = (
        create_workflow("allskip")
        .parallel(
            "g",
            step("a", lambda ctx: 1, when=lambda ctx: False),
            step("b", lambda ctx: 2, when=lambda ctx: False),
        )
        .step("after", lambda ctx: dict(ctx.outputs["g"]))
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["g"] == {} and result.outputs["after"] == {}


def test_retry_step_of_a_failed_branch_runs_a_completed_commit_again_with_the_same_key(
    engine: FluxEngine,
) -> None:
    """Documented (docs/concepts/branches.md): retry_step of a branch runs its whole group
    again, its commits too; what keeps that safe is the commit's unchanged idempotency key."""
    keys: list[str] = []
    broken = {"yes": True}

    def charge(ctx: Ctx) -> str:
        keys.append(ctx.idempotency_key)
        return "charged"

    def ship(ctx: Ctx) -> str:
        if broken["yes"]:
            raise RuntimeError("carrier down")
        return "shipped"

    flow = create_workflow("rk").parallel("g", commit("charge", charge), step("ship", ship))

    async def main() -> Any:
        await engine.execute(flow, {}, id="rk-1")
        broken["yes"] = False
        return await engine.retry_step(flow, "rk-1", "ship")

    result = run(main())
    assert result.status is RunStatus.COMPLETED, result.error
    assert len(keys) == 2 and keys[0] == keys[1]


def test_every_attempt_of_a_retried_commit_branch_is_stored_before_it_is_called(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "rc.db")
    engine = FluxEngine(storage, logger=FluxSilentLogger())
    seen: list[tuple[int, str, int]] = []

    async def charge(ctx: Ctx) -> str:
        stored = await storage.load_run(ctx.id)
        assert stored is not None
        rec = next(s for s in stored.steps if s.name == "charge")
        seen.append((ctx.attempt, rec.status.value, rec.attempts))
        if ctx.attempt < 3:
            raise ConnectionError("gateway timeout")
        return "charged"

    flow = create_workflow("rcommit").parallel(
        "g", commit("charge", charge, retries=2, backoff=QUICK), step("mail", lambda ctx: 1)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.COMPLETED, result.error
    assert seen == [(1, "running", 1), (2, "running", 2), (3, "running", 3)]


def test_a_map_item_returning_a_non_json_value_fails_naming_the_item(engine: FluxEngine) -> None:
    def handle(ctx: Ctx) -> Any:
        return object() if ctx.item == 1 else ctx.item

    flow = create_workflow("badout").map("each", handle, items=lambda ctx: [0, 1, 2], max_concurrency=1)
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.FAILED
    assert "each[1]" in (result.error or ""), result.error


def test_resuming_a_rolled_back_run_never_runs_a_finished_commit_branch_again(engine: FluxEngine) -> None:
    calls: list[str] = []
    broken = {"yes": True}

    def undo(ctx: Ctx) -> None:
        calls.append(f"undo {ctx.step_name}")

    def charge(ctx: Ctx) -> str:
        calls.append("charge")
        return "charged"

    def ship(ctx: Ctx) -> str:
        calls.append("ship")
        if broken["yes"]:
            raise RuntimeError("carrier down")
        return "shipped"

    flow = (
        create_workflow("rb-commit")
        .step("reserve", lambda ctx: 1, compensate=undo)
        .parallel("g", commit("charge", charge), step("mail", lambda ctx: 2))
        .step("ship", ship)
    )

    async def main() -> Any:
        one = await engine.execute(flow, {}, id="rbc-1")
        assert one.status is RunStatus.ROLLED_BACK
        broken["yes"] = False
        return await engine.resume(flow, "rbc-1")

    run(main())
    assert calls.count("charge") == 1, calls  # "a finished commit never runs again on resume"


def test_a_deadline_in_the_middle_of_a_map_with_max_concurrency_stops_it(tmp_path: Path) -> None:
    engine = make(tmp_path)
    started: list[int] = []
    undone: list[int] = []

    async def handle(ctx: Ctx) -> int:
        started.append(ctx.item)
        if ctx.item < 3:
            return int(ctx.item)
        await asyncio.Event().wait()  # items 3 and 4 hang until the deadline
        return -1

    def undo(ctx: Ctx) -> None:
        undone.append(ctx.item)

    flow = (
        create_workflow("mdl")
        .deadline(0.3)
        .map("each", handle, items=lambda ctx: list(range(50)), max_concurrency=2, compensate=undo)
    )
    result = run(engine.execute(flow, {}))
    assert result.status is RunStatus.CANCELLED, result.error
    assert result.error_type == "DeadlineExceededError"
    assert sorted(started) == [0, 1, 2, 3, 4]
    assert undone == [2, 1, 0]
    st = statuses(result)
    assert st["each[3]"] is StepStatus.CANCELLED and st["each[5]"] is StepStatus.PENDING


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_hostile_item_values_round_trip_on_both_storages(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    url: Any = SQLiteStorage(tmp_path / "h.db") if backend == "sqlite" else postgres_url_or_skip(request)
    engine = FluxEngine(url, logger=FluxSilentLogger(), default_retries=0)
    items: list[Any] = [
        10**400,
        -(2**63) - 1,
        "\x00",
        "\u2028\u2029",
        "😀" * 1000,
        {"": {"\x00k": [None]}},
        1e308,
    ]

    async def main() -> Any:
        try:
            result = await engine.execute(
                create_workflow("hv").map("each", lambda ctx: ctx.item, items=lambda ctx: items),
                {},
                id="hv-1",
            )
            return result, await engine.get("hv-1")
        finally:
            await engine.close()

    result, stored = asyncio.run(asyncio.wait_for(main(), 60))
    assert result.status is RunStatus.COMPLETED, result.error
    assert stored is not None and stored.outputs["each"] == items
