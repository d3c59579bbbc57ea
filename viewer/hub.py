"""The broadcast hub: one store's changes fanned out to every open SSE stream.

A subscriber does not queue messages; it accumulates what changed since it
last looked (a set of run ids, or "everything" after a reset). A slow or
stalled browser therefore costs a bounded amount of memory, and a burst of
appends reaches it as one notification instead of hundreds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .store import Change

#: Beyond this many pending run ids a subscriber just hears "many changed".
MAX_PENDING = 1000


@dataclass
class Pending:
    runs: set[str] = field(default_factory=set)
    overflow: bool = False
    reset: bool = False

    def __bool__(self) -> bool:
        return bool(self.runs) or self.overflow or self.reset

    def touches(self, run_id: str) -> bool:
        return self.reset or self.overflow or run_id in self.runs


class Subscriber:
    def __init__(self) -> None:
        self._pending = Pending()
        self._ready = asyncio.Event()
        self.closed = False

    def push(self, change: Change) -> None:
        pending = self._pending
        if change.reset:
            pending.reset = True
        elif not pending.overflow:
            pending.runs |= change.runs
            if len(pending.runs) > MAX_PENDING:
                pending.runs.clear()
                pending.overflow = True
        self._ready.set()

    def push_all(self) -> None:
        """Something changed, which runs unknown (a storage that does not say)."""
        self._pending.runs.clear()
        self._pending.overflow = True
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self, timeout: float) -> Pending:
        """What changed since the last call; empty if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            return Pending()
        self._ready.clear()
        pending, self._pending = self._pending, Pending()
        return pending


class Hub:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, change: Change) -> None:
        for sub in self._subscribers:
            sub.push(change)

    def publish_all(self) -> None:
        for sub in self._subscribers:
            sub.push_all()

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """Ends every stream: on shutdown an open SSE response would hold it up."""
        for sub in self._subscribers:
            sub.close()
