"""flux.engine: construction, list/get, hooks and the `_sync` twins."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flux
from flux import (
    FatalError,
    Flux,
    FluxEngine,
    FluxError,
    MemoryStorage,
    RunNotFoundError,
    RunStatus,
    StorageError,
    WorkflowContext,
    create_workflow,
)

EngineFactory = Callable[..., FluxEngine]


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    "kwargs",
    [
        {"default_retries": -1},
        {"default_retries": 1.5},
        {"default_retries": True},
        {"default_timeout": 0},
        {"default_timeout": -3},
        {"default_timeout": "30"},
        {"lease_seconds": 0},
        {"trace": object()},
        {"on": {"step_begin": lambda step, ctx: None}},
        {"on": {"step_start": "not callable"}},
    ],
)
def test_bad_engine_options_raise_flux_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(FluxError):
        FluxEngine(**kwargs)


def test_an_unknown_hook_key_is_named() -> None:
    with pytest.raises(FluxError, match="'workflow_done'"):
        FluxEngine(on={"workflow_done": lambda ctx: None})


def test_storage_can_be_given_as_a_url(tmp_path: Path) -> None:
    flow = create_workflow("u").step("a", lambda ctx: 1)
    with FluxEngine("memory://") as engine:
        assert isinstance(engine.storage, MemoryStorage)
        assert engine.execute_sync(flow).ok
    db = tmp_path / "sub" / "runs.db"
    with FluxEngine(f"sqlite:///{db}") as engine:
        assert isinstance(engine.storage, flux.SQLiteStorage)
        engine.execute_sync(flow, id="u-1")
    with FluxEngine(flux.SQLiteStorage(db)) as engine:
        assert engine.get_sync("u-1").outputs == {"a": 1}


@pytest.mark.parametrize("url", ["nosuch://x", "runs.db", "sqlite://"])
def test_a_bad_storage_url_raises_storage_error(url: str) -> None:
    with pytest.raises(StorageError):
        FluxEngine(url)


def test_the_default_storage_is_memory() -> None:
    with FluxEngine() as engine:
        assert isinstance(engine.storage, MemoryStorage)


# ------------------------------------------------------------------ list and get


def _wait_for_clock_to_move() -> None:
    """Make the next run's creation time differ from the last one's."""
    start = time.time()
    while time.time() <= start:
        pass


def _fill(engine: FluxEngine) -> list[str]:
    ok = create_workflow("alpha").step("a", lambda ctx: 1)

    def boom(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("no")

    bad = create_workflow("beta").step("b", boom)
    wait = create_workflow("gamma").step("g", lambda ctx: Flux.wait("go"))
    ids = []
    for flow, run_id in ((ok, "r1"), (bad, "r2"), (ok, "r3"), (wait, "r4"), (ok, "r5")):
        engine.execute_sync(flow, {"id": run_id}, id=run_id)
        ids.append(run_id)
        _wait_for_clock_to_move()
    return ids


def test_list_is_newest_first(make_engine: EngineFactory) -> None:
    engine = make_engine()
    _fill(engine)
    assert [r.id for r in engine.list_sync()] == ["r5", "r4", "r3", "r2", "r1"]
    assert [r.id for r in make_engine().list_sync()] == ["r5", "r4", "r3", "r2", "r1"]


def test_list_filters_by_name_and_status(make_engine: EngineFactory) -> None:
    engine = make_engine()
    _fill(engine)
    assert [r.id for r in engine.list_sync(name="alpha")] == ["r5", "r3", "r1"]
    assert [r.id for r in engine.list_sync(status="failed")] == ["r2"]
    assert [r.id for r in engine.list_sync(status=RunStatus.SUSPENDED)] == ["r4"]
    assert [r.id for r in engine.list_sync(status=["failed", RunStatus.SUSPENDED])] == ["r4", "r2"]
    assert [r.id for r in engine.list_sync(name="alpha", status="failed")] == []
    assert engine.list_sync(name="nothing") == []
    assert {r.status for r in engine.list_sync(status="completed")} == {RunStatus.COMPLETED}


def test_list_pages_with_limit_and_offset(make_engine: EngineFactory) -> None:
    engine = make_engine()
    _fill(engine)
    assert [r.id for r in engine.list_sync(limit=2)] == ["r5", "r4"]
    assert [r.id for r in engine.list_sync(limit=2, offset=2)] == ["r3", "r2"]
    assert [r.id for r in engine.list_sync(limit=2, offset=4)] == ["r1"]
    assert engine.list_sync(offset=5) == []
    assert engine.list_sync(limit=0) == []
    assert [r.id for r in engine.list_sync(name="alpha", limit=1, offset=1)] == ["r3"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": "done"},
        {"status": ["completed", "nope"]},
        {"limit": -1},
        {"limit": "5"},
        {"limit": True},
        {"limit": 2.0},
        {"offset": -1},
        {"offset": None},
    ],
)
def test_list_rejects_bad_arguments(memory_engine: FluxEngine, kwargs: dict[str, Any]) -> None:
    with pytest.raises(FluxError):
        memory_engine.list_sync(**kwargs)


def test_get_returns_the_run_as_stored(make_engine: EngineFactory) -> None:
    engine = make_engine()

    def step(ctx: WorkflowContext[Any]) -> dict[str, int]:
        ctx.data["seen"] = ctx.input["n"]
        return {"double": ctx.input["n"] * 2}

    result = engine.execute_sync(create_workflow("g").step("s", step).version("v7"), {"n": 4}, id="G-1")
    got = make_engine().get_sync("G-1")
    assert (got.id, got.name, got.status, got.input, got.data, dict(got.outputs)) == (
        "G-1",
        "g",
        RunStatus.COMPLETED,
        {"n": 4},
        {"seen": 4},
        {"s": {"double": 8}},
    )
    assert got.version == "v7"
    assert got.ok
    assert got.duration == pytest.approx(result.duration, abs=1.0)
    assert got.duration >= 0
    assert got.created_at is not None and got.completed_at is not None
    assert got.created_at <= got.completed_at
    assert [(h.name, h.status, h.attempts, h.output) for h in got.history] == [
        ("s", "completed", 1, {"double": 8})
    ]


def test_get_of_an_unknown_id_raises(make_engine: EngineFactory) -> None:
    with pytest.raises(RunNotFoundError, match="'missing'"):
        make_engine().get_sync("missing")


# ------------------------------------------------------------------ hooks


def test_hooks_receive_the_contract_arguments(make_engine: EngineFactory) -> None:
    calls: list[tuple[Any, ...]] = []
    engine = make_engine(
        on={
            "step_start": lambda step, ctx: calls.append(("step_start", step, ctx.step_name, ctx.attempt)),
            "step_complete": lambda step, ctx, result: calls.append(("step_complete", step, ctx.id, result)),
            "step_error": lambda step, ctx, error: calls.append(("step_error", step, ctx.id, error)),
            "workflow_complete": lambda ctx: calls.append(
                ("workflow_complete", ctx.id, ctx.name, dict(ctx.data))
            ),
            "workflow_error": lambda ctx, error: calls.append(("workflow_error", ctx.id, error)),
        }
    )
    flow = create_workflow("h").step("a", lambda ctx: ctx.data.update(x=1) or "A").step("b", lambda ctx: "B")
    engine.execute_sync(flow, id="H-1")
    assert calls == [
        ("step_start", "a", "a", 1),
        ("step_complete", "a", "H-1", "A"),
        ("step_start", "b", "b", 1),
        ("step_complete", "b", "H-1", "B"),
        ("workflow_complete", "H-1", "h", {"x": 1}),
    ]

    calls.clear()
    error = FatalError("declined")

    def fail(ctx: WorkflowContext[Any]) -> None:
        raise error

    engine.execute_sync(create_workflow("h2").step("pay", fail), id="H-2")
    assert calls == [
        ("step_start", "pay", "pay", 1),
        ("step_error", "pay", "H-2", error),
        ("workflow_error", "H-2", error),
    ]


def test_step_start_is_called_for_every_attempt(memory_engine: FluxEngine) -> None:
    starts: list[int] = []
    errors: list[str] = []
    engine = FluxEngine(
        default_backoff=memory_engine.default_backoff,
        on={
            "step_start": lambda step, ctx: starts.append(ctx.attempt),
            "step_error": lambda step, ctx, error: errors.append(str(error)),
        },
    )

    def down(ctx: WorkflowContext[Any]) -> None:
        raise ConnectionError(f"down {ctx.attempt}")

    with engine:
        engine.execute_sync(create_workflow("h").step("s", down, retries=2))
    assert starts == [1, 2, 3]
    assert errors == ["down 3"]


def test_async_hooks_are_awaited(memory_engine: FluxEngine) -> None:
    calls: list[str] = []

    async def hook(*args: Any) -> None:
        await asyncio.sleep(0)
        calls.append(args[0] if isinstance(args[0], str) else "workflow")

    engine = FluxEngine(on={"step_start": hook, "step_complete": hook, "workflow_complete": hook})
    with engine:
        engine.execute_sync(create_workflow("h").step("a", lambda ctx: 1))
    assert calls == ["a", "a", "workflow"]


@pytest.mark.parametrize("is_async", [False, True])
def test_a_raising_hook_is_logged_and_does_not_change_the_run(
    make_engine: EngineFactory, caplog: pytest.LogCaptureFixture, is_async: bool
) -> None:
    def sync_hook(*args: Any) -> None:
        raise RuntimeError("hook bug")

    async def async_hook(*args: Any) -> None:
        raise RuntimeError("hook bug")

    hook = async_hook if is_async else sync_hook
    engine = make_engine(
        logger=None,
        on={
            key: hook
            for key in ("step_start", "step_complete", "step_error", "workflow_complete", "workflow_error")
        },
    )
    flow = create_workflow("h").step("a", lambda ctx: ctx.data.update(x=1) or "A")
    with caplog.at_level(logging.ERROR, logger="flux"):
        result = engine.execute_sync(flow, id="HB-1")
    assert result.status is RunStatus.COMPLETED
    assert (result.data, dict(result.outputs)) == ({"x": 1}, {"a": "A"})
    messages = [r.getMessage() for r in caplog.records if r.name == "flux"]
    for key in ("step_start", "step_complete", "workflow_complete"):
        assert any(f"'{key}'" in m and "hook bug" in m for m in messages), messages

    def fail(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("no")

    failed = engine.execute_sync(create_workflow("h2").step("x", fail), id="HB-2")
    assert (failed.status, failed.error) == (RunStatus.FAILED, "no")


# ------------------------------------------------------------------ sync twins


def test_every_sync_twin_works_without_a_loop(tmp_path: Path) -> None:
    flow = (
        create_workflow("twins")
        .step("a", lambda ctx: "A")
        .step("wait", lambda ctx: Flux.wait("go"))
        .step("c", lambda ctx: ctx.outputs["wait"])
    )
    engine = FluxEngine(flux.SQLiteStorage(tmp_path / "twins.db"))
    assert engine.execute_sync(flow, {"k": 1}, id="TW").status is RunStatus.SUSPENDED
    assert engine.resume_sync(flow, "TW").status is RunStatus.SUSPENDED
    assert engine.signal_sync(flow, "TW", "go", "payload").outputs["c"] == "payload"
    assert engine.retry_step_sync(flow, "TW", "c").status is RunStatus.COMPLETED
    assert engine.recover_sync([flow]) == []
    assert engine.get_sync("TW").status is RunStatus.COMPLETED
    assert [r.id for r in engine.list_sync()] == ["TW"]
    engine.close_sync()
    engine.close_sync()  # closing twice is harmless
    with pytest.raises(FluxError, match="closed"):
        asyncio.run(engine.execute(flow, {"k": 1}))


def test_the_engine_is_a_context_manager(tmp_path: Path) -> None:
    with FluxEngine(flux.SQLiteStorage(tmp_path / "cm.db")) as engine:
        engine.execute_sync(create_workflow("cm").step("a", lambda ctx: 1), id="cm")
    with pytest.raises(FluxError, match="closed"):
        asyncio.run(engine.execute(create_workflow("cm").step("a", lambda ctx: 1)))

    async def main() -> None:
        async with FluxEngine(flux.SQLiteStorage(tmp_path / "cm.db")) as engine:
            assert (await engine.get("cm")).ok

    asyncio.run(main())


def test_a_sync_call_on_a_closed_engine_leaves_no_event_loop_open() -> None:
    engine = FluxEngine()
    engine.close_sync()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(FluxError, match="closed"):
            engine.execute_sync(create_workflow("c").step("a", lambda ctx: 1))
        with pytest.raises(FluxError, match="closed"):
            engine.resume_sync(create_workflow("c").step("a", lambda ctx: 1), "x")
        del engine
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def _twin_calls(engine: FluxEngine) -> list[tuple[str, Callable[[], Any]]]:
    flow = create_workflow("twins").step("a", lambda ctx: 1)
    return [
        ("execute", lambda: engine.execute_sync(flow, {})),
        ("resume", lambda: engine.resume_sync(flow, "x")),
        ("signal", lambda: engine.signal_sync(flow, "x", "go")),
        ("retry_step", lambda: engine.retry_step_sync(flow, "x", "a")),
        ("recover", lambda: engine.recover_sync([flow])),
        ("get", lambda: engine.get_sync("x")),
        ("list", lambda: engine.list_sync()),
        ("close", lambda: engine.close_sync()),
    ]


@pytest.mark.parametrize("index", range(8))
def test_a_sync_twin_inside_a_running_loop_raises_a_clear_error(index: int) -> None:
    engine = FluxEngine()
    method, call = _twin_calls(engine)[index]

    async def main() -> FluxError:
        with pytest.raises(FluxError) as info:
            call()
        return info.value

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = asyncio.run(main())
        gc.collect()
    assert f"{method}_sync" in str(error)
    assert f"await engine.{method}(" in str(error)
    assert [w for w in caught if "never awaited" in str(w.message)] == []
    # The engine is still usable afterwards.
    assert engine.execute_sync(create_workflow("ok").step("a", lambda ctx: 1)).ok
    engine.close_sync()


def test_async_and_sync_calls_see_the_same_runs() -> None:
    flow = create_workflow("mix").step("a", lambda ctx: "A")
    engine = FluxEngine()

    async def main() -> None:
        await engine.execute(flow, id="M-1")

    asyncio.run(main())
    assert engine.get_sync("M-1").outputs == {"a": "A"}
    engine.close_sync()


def test_sync_methods_may_be_called_from_many_threads_at_once() -> None:
    import threading

    barrier = threading.Barrier(8)
    flow = create_workflow("threads").step("one", lambda ctx: ctx.input["n"] * 2)
    results: dict[int, Any] = {}
    engine = FluxEngine()

    def call(n: int) -> None:
        barrier.wait()  # all threads call at the same moment
        results[n] = engine.execute_sync(flow, {"n": n}, id=f"t-{n}").outputs["one"]

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.close_sync()
    assert results == {n: n * 2 for n in range(8)}


def test_a_base_exception_from_a_handler_reaches_the_sync_caller() -> None:
    def stop(ctx: WorkflowContext[Any]) -> None:
        raise KeyboardInterrupt

    engine = FluxEngine()
    with pytest.raises(KeyboardInterrupt):
        engine.execute_sync(create_workflow("ki").step("stop", stop))
    # the engine's loop survived: it still works
    assert engine.execute_sync(create_workflow("ok").step("a", lambda ctx: 1)).status == "completed"
    engine.close_sync()
