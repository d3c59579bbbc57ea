"""flux.attempts: one handler call under a timeout; abandoned attempts never pile up, never
keep a process alive, never overlap the next attempt, and never have their late result kept."""

from __future__ import annotations

import asyncio
import contextvars
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger, StepTimeoutError, WorkflowContext, create_workflow
from flux.attempts import Attempts

EngineFactory = Callable[..., FluxEngine]
ROOT = Path(__file__).resolve().parents[2]
#: How long a test waits for something that happens at once unless the engine is broken.
PATIENCE = 10.0
#: How long a test waits for a child process to exit before calling it stuck.
EXIT_PATIENCE = 60.0


def _forever(ctx: WorkflowContext[Any]) -> None:
    threading.Event().wait()  # never returns: the thread is abandoned for good


#: A run that abandons one sync attempt, blocked forever; for the child processes below.
FOREVER = create_workflow("forever").step("block", _forever, timeout=0.05, retries=0)


def child_execute() -> None:
    """The body of a child process: execute FOREVER and return from the script."""
    url, style = sys.argv[1], sys.argv[2]
    if style == "sync":
        engine = FluxEngine(storage=url, logger=FluxSilentLogger())
        result = engine.execute_sync(FOREVER, id="stuck")
    else:

        async def main() -> Any:
            async with FluxEngine(storage=url, logger=FluxSilentLogger()) as engine:
                return await engine.execute(FOREVER, id="stuck")

        result = asyncio.run(main())
    print(result.status.value, result.error_type, flush=True)


def _exit_of(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=EXIT_PATIENCE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process did not exit by itself; stderr:\n{err}")
    return proc.returncode, out, err


def _stored(url: str, run_id: str) -> tuple[str, str | None]:
    with FluxEngine(storage=url, logger=FluxSilentLogger()) as engine:
        result = engine.get_sync(run_id)
    return result.status.value, result.error_type


# ------------------------------------------------------------------ abandoned threads


def test_abandoned_sync_attempts_never_starve_later_steps(memory_engine: FluxEngine) -> None:
    release = threading.Event()
    entered: list[int] = []

    def stuck(ctx: WorkflowContext[Any]) -> None:
        entered.append(ctx.attempt)
        release.wait()

    called: list[bool] = []

    def quick(ctx: WorkflowContext[Any]) -> str:
        called.append(True)
        return "done"

    stuck_flow = create_workflow("stuck").step("s", stuck, timeout=0.05, retries=0)
    quick_flow = create_workflow("quick").step("q", quick, timeout=PATIENCE, retries=0)

    async def main() -> Any:
        stuck_runs = await asyncio.gather(*(memory_engine.execute(stuck_flow) for _ in range(40)))
        assert [r.error_type for r in stuck_runs] == ["StepTimeoutError"] * 40
        return await memory_engine.execute(quick_flow)

    try:
        result = asyncio.run(main())
    finally:
        release.set()
    assert (result.status, result.error) == ("completed", None)
    assert len(entered) == 40, "every stuck attempt was really called"
    assert called == [True]
    assert result.outputs["q"] == "done"


@pytest.mark.slow
@pytest.mark.parametrize("style", ["sync", "async"])
def test_a_process_with_an_abandoned_thread_exits_once_execute_returned(tmp_path: Path, style: str) -> None:
    url = f"sqlite:///{tmp_path / 'flux.db'}"
    code = "from tests.engine.test_attempts import child_execute; child_execute()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, url, style],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    returncode, out, err = _exit_of(proc)
    assert (returncode, out.strip()) == (0, "failed StepTimeoutError"), err


def _worker(url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flux.cli", "worker", "tests.engine.test_attempts:FOREVER",
         "--storage", url, "--poll", "0.05", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_a_burst_worker_with_an_abandoned_thread_exits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flux.db'}"
    with FluxEngine(storage=url, logger=FluxSilentLogger()) as engine:
        engine.start_sync(FOREVER, id="queued")
    returncode, _, err = _exit_of(_worker(url, "--burst"))
    assert returncode == 0, err
    assert _stored(url, "queued") == ("failed", "StepTimeoutError")


@pytest.mark.slow
def test_a_worker_with_an_abandoned_thread_exits_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flux.db'}"
    with FluxEngine(storage=url, logger=FluxSilentLogger()) as engine:
        engine.start_sync(FOREVER, id="queued")
        proc = _worker(url)
        try:
            assert engine.wait_sync("queued", timeout=EXIT_PATIENCE).error_type == "StepTimeoutError"
        finally:
            proc.send_signal(signal.SIGTERM)
    returncode, _, err = _exit_of(proc)
    assert returncode == 0, err


# ------------------------------------------------------------------ abandoned tasks


def test_an_async_handler_that_swallows_cancellation_has_its_late_result_discarded(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()

    async def stubborn(ctx: WorkflowContext[Any]) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "late"
        return "never"

    flow = create_workflow("t").step("stubborn", stubborn, timeout=0.05, retries=0)
    result = engine.execute_sync(flow, id="late")
    assert (result.status, result.error_type) == ("failed", "StepTimeoutError")
    assert "stubborn" not in result.outputs
    stored = engine.get_sync("late")
    assert (stored.status, stored.outputs, stored.history[0].status) == ("failed", {}, "failed")


def test_execute_returns_at_the_timeout_while_a_stubborn_handler_goes_on(memory_engine: FluxEngine) -> None:
    events: list[str] = []

    async def main() -> Any:
        gate = asyncio.Event()
        # A fail-safe, not a threshold: with a broken engine, execute returns only after it.
        asyncio.get_running_loop().call_later(PATIENCE, gate.set)

        async def stubborn(ctx: WorkflowContext[Any]) -> str:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                events.append("cancel swallowed")
            await gate.wait()
            events.append("handler returned")
            return "late"

        flow = create_workflow("t").step("stubborn", stubborn, timeout=0.05, retries=0)
        result = await memory_engine.execute(flow, id="stubborn")
        events.append("execute returned")
        gate.set()
        for _ in range(10):
            await asyncio.sleep(0)
        return result

    result = asyncio.run(main())
    assert events == ["cancel swallowed", "execute returned", "handler returned"]
    assert (result.status, result.error_type) == ("failed", "StepTimeoutError")
    assert memory_engine.get_sync("stubborn").outputs == {}


# ------------------------------------------------------------------ no overlap


@pytest.mark.parametrize("kind", ["step", "commit"])
def test_the_retry_of_an_abandoned_attempt_starts_only_after_it_returned(
    make_engine: EngineFactory, kind: str
) -> None:
    engine = make_engine()
    order: list[tuple[str, int]] = []
    second_entered = threading.Event()

    def body(ctx: WorkflowContext[Any]) -> str:
        order.append(("enter", ctx.attempt))
        if ctx.attempt == 1:
            while not ctx.cancelled:  # a handler that notices its abandonment, as it should
                threading.Event().wait(0.005)
            # A broken engine starts attempt 2 at once: give it the chance to show it.
            second_entered.wait(1.0)
        else:
            second_entered.set()
        order.append(("exit", ctx.attempt))
        return f"attempt {ctx.attempt}"

    add = create_workflow("t").step if kind == "step" else create_workflow("t").commit
    flow = add("body", body, timeout=0.05, retries=2)
    result = engine.execute_sync(flow, id=f"overlap-{kind}")
    assert order == [("enter", 1), ("exit", 1), ("enter", 2), ("exit", 2)]
    assert (result.status, result.outputs["body"]) == ("completed", "attempt 2")
    assert result.history[0].attempts == 2


# ------------------------------------------------------------------ the handler's own errors


@pytest.mark.parametrize("is_async", [False, True])
def test_a_handler_s_own_timeout_error_is_not_a_flux_timeout(
    make_engine: EngineFactory, is_async: bool
) -> None:
    engine = make_engine()

    def sync_handler(ctx: WorkflowContext[Any]) -> None:
        raise TimeoutError(f"upstream timed out (attempt {ctx.attempt})")

    async def async_handler(ctx: WorkflowContext[Any]) -> None:
        await asyncio.wait_for(asyncio.Event().wait(), 0.001)

    flow = create_workflow("t").step(
        "call", async_handler if is_async else sync_handler, timeout=PATIENCE, retries=1
    )
    result = engine.execute_sync(flow)
    assert (result.status, result.error_type) == ("failed", "TimeoutError")
    assert result.history[0].attempts == 2


# ------------------------------------------------------------------ Attempts itself


def _call(
    attempts: Attempts,
    fn: Callable[..., Any],
    ctx: Any,
    *,
    key: str,
    timeout: float | None,
    is_async: bool = False,
    cancel: threading.Event | None = None,
) -> Coroutine[Any, Any, Any]:
    def timeout_error() -> StepTimeoutError:
        return StepTimeoutError(f"{key} timed out")

    return attempts.call(
        fn, ctx, is_async=is_async, timeout=timeout, cancel=cancel, key=key, timeout_error=timeout_error
    )


def test_a_key_waits_only_for_its_own_abandoned_calls() -> None:
    attempts = Attempts()
    release = threading.Event()
    order: list[str] = []

    def stuck(ctx: str) -> None:
        release.wait()
        order.append(f"{ctx} returned")

    async def main() -> None:
        with pytest.raises(StepTimeoutError, match="a timed out"):
            await _call(attempts, stuck, "a1", key="a", timeout=0.01)
        assert (attempts.running("a"), attempts.running("b")) == (1, 0)
        # Another key is not held up, and runs in a new thread although one is stuck.
        assert await _call(attempts, lambda ctx: f"{ctx} ran", "b1", key="b", timeout=PATIENCE) == "b1 ran"
        second = asyncio.ensure_future(
            _call(attempts, lambda ctx: order.append(f"{ctx} ran"), "a2", key="a", timeout=None)
        )
        await asyncio.sleep(0)
        assert not second.done()  # waits for a1
        release.set()
        await second
        assert attempts.running("a") == 0

    try:
        asyncio.run(main())
    finally:
        release.set()
        attempts.close()
    assert order == ["a1 returned", "a2 ran"]


def test_threads_are_reused_and_daemon_and_close_does_not_wait() -> None:
    attempts = Attempts()
    release = threading.Event()
    threads: list[threading.Thread] = []

    async def main() -> None:
        for key in ("x", "y"):
            await _call(attempts, lambda ctx: threads.append(threading.current_thread()), None,
                        key=key, timeout=PATIENCE)  # fmt: skip
        with pytest.raises(StepTimeoutError):
            await _call(attempts, lambda ctx: release.wait(), None, key="z", timeout=0.01)

    try:
        asyncio.run(main())
        attempts.close()  # returns although a thread is stuck in its handler
    finally:
        release.set()
    assert threads[0] is threads[1]
    assert threads[0].daemon


def test_a_cancelled_caller_cancels_the_handler() -> None:
    attempts = Attempts()
    seen: list[str] = []

    async def main() -> None:
        cancel = threading.Event()
        started = asyncio.Event()

        async def handler(ctx: Any) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("handler cancelled")
                raise

        caller = asyncio.ensure_future(
            _call(attempts, handler, None, key="k", timeout=PATIENCE, is_async=True, cancel=cancel)
        )
        await started.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await attempts.settled("k")
        seen.append(f"cancel set: {cancel.is_set()}")

    asyncio.run(main())
    attempts.close()
    assert seen == ["handler cancelled", "cancel set: True"]


def test_a_sync_handler_sees_the_caller_s_context_variables() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    attempts = Attempts()

    async def main() -> Any:
        var.set("from the caller")
        return await _call(attempts, lambda ctx: var.get(), None, key="k", timeout=PATIENCE)

    assert asyncio.run(main()) == "from the caller"
    attempts.close()
