"""flux.attempts: one handler call under a timeout; abandoned attempts never pile up, never
keep a process alive, never overlap the next attempt, and never have their late result kept."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger, WorkflowContext, create_workflow

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
