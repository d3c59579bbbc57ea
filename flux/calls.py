"""One handler call under a timeout (see `flux.attempts` for abandoned attempts)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .context import WorkflowContext
from .errors import StepTimeoutError

_PLAIN = frozenset({str, int, float, bool, type(None)})
_executor: ThreadPoolExecutor | None = None


class _HandlerRaised(Exception):
    """Carries a handler's own TimeoutError out of `wait_for`, so it is not taken for ours."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="flux-step")
    return _executor


async def call_handler(
    fn: Callable[..., Any],
    ctx: WorkflowContext[Any],
    *,
    is_async: bool,
    timeout: float | None,
    cancel: threading.Event | None,
    key: str,
    timeout_error: Callable[[], StepTimeoutError] | None,
) -> Any:
    """Call `fn(ctx)` once; under `timeout` (seconds) if given."""
    if timeout is None:
        result = fn(ctx)
        if is_async or (type(result) not in _PLAIN and inspect.isawaitable(result)):
            result = await result
        return result
    assert timeout_error is not None
    if is_async:
        return await _awaited(fn(ctx), timeout, timeout_error)
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_pool(), fn, ctx)
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(future, timeout)
    except (TimeoutError, asyncio.TimeoutError):
        if future.cancelled():
            if cancel is not None:
                cancel.set()
            raise timeout_error() from None
        raise
    if inspect.isawaitable(result):  # a plain callable that returned a coroutine
        left = timeout - (time.monotonic() - started)
        result = await _awaited(result, max(left, 0.0), timeout_error)
    return result


async def _awaited(awaitable: Any, left: float, timeout_error: Callable[[], StepTimeoutError]) -> Any:
    async def guarded() -> Any:
        try:
            return await awaitable
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise _HandlerRaised(exc) from exc

    try:
        return await asyncio.wait_for(guarded(), left)
    except _HandlerRaised as wrapped:
        raise wrapped.error from None
    except (TimeoutError, asyncio.TimeoutError):
        raise timeout_error() from None
