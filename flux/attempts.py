"""One call of a handler under its timeout, and the calls that outlive their attempt.

`Attempts.call` calls a handler once. Without a timeout it runs inline (a thread hop costs
more than a trivial step). With one, an async handler runs as a task that is cancelled at
the timeout, and a sync handler runs in a daemon thread that is told `ctx.cancelled` at the
timeout; either way the attempt fails with the step's `StepTimeoutError` at once, without
waiting for the handler, and whatever the handler returns later is discarded.

A call that has not returned by then is *abandoned*: it goes on in the background, tracked
under the caller's key (run id and step) until it returns. `call` first awaits `settled(key)`,
so the next attempt of a step never overlaps an abandoned one (SPEC §5, "Commits and
retries"). The threads are daemon threads that a new call never waits behind (one more is
started whenever all are busy) and that never keep the process alive at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Any

from .errors import StepTimeoutError

_PLAIN = frozenset({str, int, float, bool, type(None)})
_Job = Callable[[], None]
#: A call for a thread to make; it returns what to do once the thread is free again.
_Work = Callable[[], _Job]


class Attempts:
    """Calls handlers for one engine; `close()` never blocks on an abandoned call."""

    def __init__(self, name: str = "flux-step", idle_seconds: float = 60.0) -> None:
        self._threads = _DaemonThreads(name, idle_seconds)
        self._lock = threading.Lock()
        #: Key → the calls under a timeout that are still running (abandoned ones included).
        self._running: dict[Hashable, list[_Running]] = {}

    async def call(
        self,
        fn: Callable[..., Any],
        ctx: Any,
        *,
        is_async: bool,
        timeout: float | None,
        cancel: threading.Event | None,
        key: Hashable,
        timeout_error: Callable[[], StepTimeoutError],
        thread: bool = False,
    ) -> Any:
        """Call `fn(ctx)` once and return its result (awaited if it is awaitable).

        `timeout` is in seconds (None: no limit, the call runs inline). At the timeout,
        `cancel` is set (the event behind `ctx.cancelled`) and `timeout_error()` is raised.
        `key` names the sequence of attempts (run id and step): a call first waits until no
        earlier call under the same key is still running. A handler's own `TimeoutError`
        is raised as it is. If the caller is cancelled, the handler is cancelled too (an
        async one) or told so by `cancel` (a sync one).
        """
        if key in self._running:
            await self.settled(key)
        if thread and not is_async:  # a branch: beside the others, in a thread of its own
            return await self._in_thread(fn, ctx, timeout, cancel or threading.Event(), key, timeout_error)
        if timeout is None:
            result = fn(ctx)
            if is_async or (type(result) not in _PLAIN and inspect.isawaitable(result)):
                result = await result
            return result
        cancel = threading.Event() if cancel is None else cancel
        if is_async:
            return await self._in_task(fn(ctx), timeout, cancel, key, timeout_error)
        return await self._in_thread(fn, ctx, timeout, cancel, key, timeout_error)

    async def settled(self, key: Hashable) -> None:
        """Return once no call under `key` is still running."""
        while True:
            with self._lock:
                running = list(self._running.get(key, ()))
            if not running:
                return
            for call in running:
                await call.wait()

    def running(self, key: Hashable) -> int:
        """How many calls under `key` are still running."""
        with self._lock:
            return len(self._running.get(key, ()))

    def close(self) -> None:
        """Let the idle threads go; abandoned ones end when their handler returns."""
        self._threads.close()

    # ------------------------------------------------------------------ internals

    def _track(self, key: Hashable) -> _Running:
        call = _Running()
        with self._lock:
            self._running.setdefault(key, []).append(call)
        return call

    def _untrack(self, key: Hashable, call: _Running) -> None:
        with self._lock:
            calls = self._running[key]
            calls.remove(call)
            if not calls:
                del self._running[key]
        call.finish()

    async def _in_task(
        self,
        awaitable: Any,
        timeout: float,
        cancel: threading.Event,
        key: Hashable,
        timeout_error: Callable[[], StepTimeoutError],
    ) -> Any:
        task = asyncio.ensure_future(awaitable)
        running = self._track(key)

        def done(task: asyncio.Future[Any]) -> None:
            if not task.cancelled():
                task.exception()  # retrieved: an abandoned task's error is nobody's to log
            self._untrack(key, running)

        task.add_done_callback(done)  # before `wait`'s: untracked when `call` returns
        try:
            finished, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            cancel.set()
            raise
        if not finished:
            task.cancel()
            cancel.set()
            # One turn of the loop lets a handler end promptly on its cancellation (its
            # `except`/`finally` run before the attempt's failure is recorded); one that
            # swallows it and goes on is abandoned, and its result is discarded.
            await asyncio.sleep(0)
            raise timeout_error()
        return task.result()

    async def _in_thread(
        self,
        fn: Callable[..., Any],
        ctx: Any,
        timeout: float | None,
        cancel: threading.Event,
        key: Hashable,
        timeout_error: Callable[[], StepTimeoutError],
    ) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        running = self._track(key)
        context = contextvars.copy_context()

        def report(ok: bool, value: Any) -> None:
            if not outcome.done():
                outcome.set_result((ok, value))
            elif inspect.iscoroutine(value):  # abandoned: its coroutine is never awaited
                value.close()

        def job() -> _Job:
            try:
                ok, value = True, context.run(fn, ctx)
            except BaseException as exc:  # carried to the caller, as an executor would
                ok, value = False, exc

            def then() -> None:  # once this thread is free for the caller's next call
                # Settled before the caller hears of it, so the next attempt may start at once.
                self._untrack(key, running)
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    loop.call_soon_threadsafe(report, ok, value)

            return then

        self._threads.submit(job)
        try:
            finished, _ = await asyncio.wait({outcome}, timeout=timeout)
        except asyncio.CancelledError:
            outcome.cancel()
            cancel.set()
            raise
        if not finished:
            outcome.cancel()  # abandoned: what it returns later is discarded
            cancel.set()
            raise timeout_error()
        ok, value = outcome.result()
        if not ok:
            raise value
        if type(value) not in _PLAIN and inspect.isawaitable(value):  # a callable returning a coroutine
            if timeout is None:
                return await value
            left = max(timeout - (loop.time() - started), 0.0)
            return await self._in_task(value, left, cancel, key, timeout_error)
        return value


class _Running:
    """One call still running; any number of event loops may wait for its end."""

    __slots__ = ("_done", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def finish(self) -> None:
        """Called from any thread once the call returned."""
        with self._lock:
            self._done = True
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_resolve, waiter)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._done:
                return
            self._waiters.append((loop, waiter))
        await waiter


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _DaemonThreads:
    """Reusable daemon threads. A job never waits for a free thread: one more is started
    whenever all are busy. A thread idle for `idle_seconds` ends; none blocks the exit."""

    def __init__(self, name: str, idle_seconds: float) -> None:
        self._name = name
        self._idle_seconds = idle_seconds
        self._jobs: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        #: Threads waiting for a job that no `submit` has claimed yet.
        self._idle = 0
        self._started = 0
        self._closed = False

    def submit(self, work: _Work) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # claimed under the lock: exactly one idle thread takes it
                self._jobs.put(work)
                return
            self._started += 1
            name = f"{self._name}-{self._started}"
        threading.Thread(target=self._serve, args=(work,), name=name, daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)

    def _serve(self, work: _Work | None) -> None:
        while work is not None:
            then = work()
            work = None  # drop the finished call's references while idle
            free = self._free()
            then()  # after `_free`: the next call, made as soon as this one is reported, reuses us
            work = self._next() if free else None

    def _free(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._idle += 1
            return True

    def _next(self) -> _Work | None:
        while True:
            try:
                return self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():  # no call claimed this thread: it may go
                        if not self._closed:
                            self._idle -= 1
                        return None
