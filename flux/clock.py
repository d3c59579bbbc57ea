"""Where the engine takes its notion of time from (SPEC §10).

Wake times, backoff delays, wait timeouts, deadlines, schedule slots and trace timestamps
all come from `FluxEngine.clock`. `SystemClock` is the real one; `flux.testing.VirtualClock`
is one a test moves forward by hand. The run time of handler code (step `timeout=`) and
lease expiry stay real.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of wall-clock time (epoch seconds) and of waiting on it."""

    def now(self) -> float:
        """The current time, in seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
