"""Helpers for testing workflows: `VirtualClock`, a clock a test moves forward by hand.

```python
clock = VirtualClock(start=datetime(2026, 1, 1, tzinfo=timezone.utc))
engine = FluxEngine(clock=clock)
result = await engine.execute(trial, {"user": "ada"})  # suspended: it sleeps for a day
await clock.advance(86400)  # the day passes at once; the run wakes and goes on
```

`FluxEngine(clock=clock)` takes every notion of time from it: wake times, backoff delays
between retries, wait timeouts, deadlines, schedule slots, trace timestamps, run times.
`advance(seconds)` runs everything that falls due in those seconds, in time order, and
returns when the engines it serves are idle. The run time of handler code (a step's
`timeout=`) and lease expiry stay real.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import FluxError

if TYPE_CHECKING:
    from .engine import FluxEngine

__all__ = ["VirtualClock"]

T = TypeVar("T")

#: Rounds of `advance` at one moment before it gives up (a run that falls due again and
#: again at the same instant is a bug in the workflow, not something to loop on forever).
_MAX_ROUNDS = 10_000
#: The clock stays before the year 9899, so that a wake time a hundred years on (the longest
#: sleep, timeout or deadline) is still a datetime.
_LAST = dt.datetime(9899, 1, 1, tzinfo=dt.timezone.utc).timestamp()


class VirtualClock:
    """A clock that stands still until `advance` moves it (SPEC §10)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is None:
            start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        if not isinstance(start, dt.datetime) or start.tzinfo is None or start.utcoffset() is None:
            raise FluxError(f"VirtualClock(start={start!r}): pass an aware datetime")
        if start.timestamp() >= _LAST:
            raise FluxError(
                f"VirtualClock(start={start.isoformat()}): the clock must start before the year 9899"
            )
        self._now = start.timestamp()
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._engines: list[FluxEngine] = []
        #: The task waiting on each pending sleep: how `advance` tells a run that waits on
        #: this clock from one that is doing something.
        self._sleepers: dict[asyncio.Task[Any], asyncio.Future[None]] = {}

    # ------------------------------------------------------------------ the Clock protocol

    def now(self) -> float:
        return self._now

    def datetime(self) -> dt.datetime:
        """The clock's time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self._now, dt.timezone.utc)

    async def sleep(self, seconds: float) -> None:
        if not seconds > 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self._now + seconds, next(self._order), future))
        task = asyncio.current_task()
        if task is not None:
            self._sleepers[task] = future
        try:
            await future
        finally:
            if task is not None and self._sleepers.get(task) is future:
                del self._sleepers[task]

    def attach(self, engine: FluxEngine) -> None:
        """Called by `FluxEngine(clock=self)`: `advance` runs what falls due on it."""
        self._engines.append(engine)

    # ------------------------------------------------------------------ moving time

    async def advance(self, seconds: float) -> None:
        """Move the clock `seconds` forward, stopping at every moment something falls due
        (a sleep, a retry's backoff, a wait's timeout, a deadline, a schedule slot, a stored
        wake time), running it, and waiting until the engines are idle again."""
        shown = repr(seconds) if len(repr(seconds)) <= 40 else repr(seconds)[:37] + "..."
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise FluxError(f"VirtualClock.advance({shown}): must be a finite number of seconds")
        if seconds < 0:
            raise FluxError(f"VirtualClock.advance({shown}): time does not go back")
        if not seconds < _LAST - self._now:  # NaN, inf, an int too large for a float
            raise FluxError(
                f"VirtualClock.advance({shown}): must be a finite number of seconds that keeps "
                "the clock before the year 9899"
            )
        target = self._now + seconds
        await self._run_due()
        while (moment := await self._next_moment()) is not None and moment <= target:
            self._now = max(self._now, moment)
            await self._run_due()
        self._now = max(self._now, target)  # a concurrent advance may have gone further
        await self._run_due()

    async def run(self, work: Coroutine[Any, Any, T], *, limit: float = 366 * 86400.0) -> T:
        """Await `work` (say `engine.execute(...)` of a run that retries with backoff or sleeps
        in-process) while moving the clock from one due moment to the next, until it returns.
        Raises `FluxError` if it waits on something other than this clock (nothing falls due)
        or needs more than `limit` seconds of virtual time."""
        task = asyncio.ensure_future(work)
        end = self._now + limit
        try:
            while True:
                await self._run_due()
                if task.done():
                    return task.result()
                moment = await self._next_moment()
                if moment is None or moment > end:
                    raise FluxError(
                        f"VirtualClock.run: the work is not done and nothing falls due "
                        f"{'at all' if moment is None else f'within {limit:g}s'}"
                    )
                self._now = moment
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def advance_sync(self, seconds: float) -> None:
        """`advance` for code with no event loop: the engines' own loop runs it."""
        if not self._engines:
            raise FluxError("VirtualClock.advance_sync: no FluxEngine uses this clock yet")
        engine = self._engines[0]
        engine._run_on_loop(lambda: self.advance(seconds))

    async def _next_moment(self) -> float | None:
        moments = [w[0] for w in self._waiters if not w[2].done()]
        for engine in self._live():
            names = list(engine._known)
            if names:
                due = await engine.storage.next_due(names)
                if due is not None:
                    moments.append(due)
            slot = await engine._next_schedule_due()
            if slot is not None:
                moments.append(slot)
        later = [m for m in moments if m > self._now]
        return min(later) if later else None

    async def _run_due(self) -> None:
        """Run all that is due at the current moment until nothing more is."""
        for _ in range(_MAX_ROUNDS):
            progressed = False
            while self._waiters and self._waiters[0][0] <= self._now:
                _, _, future = heapq.heappop(self._waiters)
                if not future.done():
                    future.set_result(None)
                    progressed = True
            await self._settle()
            for engine in self._live():
                if await engine._fire_schedules(self._now):
                    progressed = True
                if await engine._take_due(self._now):
                    progressed = True
            await self._settle()
            if not progressed:
                return
        raise FluxError(f"VirtualClock: runs keep falling due at {self.datetime().isoformat()}")

    def _live(self) -> list[FluxEngine]:
        return [e for e in self._engines if not e._closed]

    def _busy(self) -> bool:
        """Whether any run an engine drives is doing something other than waiting on this
        clock (a handler, a storage call, a thread)."""
        asleep = {task for task, future in self._sleepers.items() if not future.done()}
        for engine in self._live():
            driving = set()
            for driver in engine._drivers.values():
                if driver.task not in asleep:
                    return True
                driving.add(driver.task)
            for task in engine._background:
                if not task.done() and task not in driving:
                    return True
        return False

    async def _settle(self) -> None:
        """Return once every run in hand waits on this clock or is done."""
        idle = 0
        while idle < 3:  # idle for a few rounds of the loop in a row: no callback in flight
            await asyncio.sleep(0)
            if self._busy():
                idle = 0
                await asyncio.sleep(0.0005)  # real work (a thread, a real sleep) in flight
            else:
                idle += 1
