"""The heartbeat: one thread per engine that keeps its leases alive.

It runs beside the event loop, not on it: a handler that blocks the loop, or a storage call
that waits out a lock on the loop's connection, cannot stop it, so no other process takes
over a run whose holder is alive (SPEC §5). Every third of the lease time it renews all
the engine's leases with one `storage.heartbeat_sync` call, on a connection of the
storage's own for it. What it learns goes back to the loop through
`loop.call_soon_threadsafe`: `on_lost(run_id)` for a lease that another process took, and
`on_cancel(run_id, reason)` for a run that `engine.cancel` asked to stop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import FluxError
from .logger import FluxLogger
from .storage import WorkflowStorage


@dataclass(eq=False)  # compared by identity: a run dropped and held again is a new hold
class _Hold:
    run_id: str
    loop: asyncio.AbstractEventLoop
    on_lost: Callable[[str], object]
    on_cancel: Callable[[str, str], object]
    #: Set from this thread at once (a loop blocked by a sync handler runs no callback):
    #: what `ctx.cancelled` of an attempt on the loop's thread reads.
    flag: _Flag | None = None
    cancel_seen: str | None = None


class _Flag(Protocol):
    def set(self) -> None: ...


class Heartbeat:
    """Renews the leases of `owner` held with `hold` until `drop`; a daemon thread, started
    by the first `hold` and stopped by `close`."""

    def __init__(
        self, storage: WorkflowStorage, owner: str, lease_seconds: float, logger: FluxLogger
    ) -> None:
        self.storage = storage
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / 3
        self.logger = logger
        self._held: dict[str, _Hold] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Beats done (with or without an error): lets tests wait for the next one.
        self.beats = 0

    def hold(
        self,
        run_id: str,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[str], object],
        on_cancel: Callable[[str, str], object],
        flag: _Flag | None = None,
    ) -> None:
        """Keep the lease of `run_id` (just acquired, so valid for a full lease time) alive;
        `flag` is set from the heartbeat's thread when the lease is lost or a cancel seen."""
        with self._lock:
            if self._stop.is_set():
                raise FluxError(f"run '{run_id}': the heartbeat of {self.owner} is closed")
            self._held[run_id] = _Hold(run_id, loop, on_lost, on_cancel, flag)
            if self._thread is None or not self._thread.is_alive():  # not alive: after a fork
                self._thread = threading.Thread(target=self._run, name="flux-heartbeat", daemon=True)
                self._thread.start()

    def drop(self, run_id: str) -> None:
        with self._lock:
            self._held.pop(run_id, None)

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread; a beat in progress is waited for, up to one lease time."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.lease_seconds)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        next_beat = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_beat - time.monotonic())):
            next_beat = time.monotonic() + self.interval
            try:
                self.beat()
            except BaseException as exc:  # the thread never dies: the next beat tries again
                self.logger.error(f"heartbeat failed: {exc!r}; retrying at the next beat", exc=exc)
            finally:
                self.beats += 1

    def beat(self) -> None:
        """Renew every held lease once, and tell the loops what was learnt."""
        with self._lock:
            holds = list(self._held.values())
        if not holds:
            return
        expires_at = time.time() + self.lease_seconds
        answer = self.storage.heartbeat_sync(self.owner, [h.run_id for h in holds], expires_at)
        for hold in holds:
            with self._lock:
                if self._held.get(hold.run_id) is not hold:
                    continue  # dropped (or dropped and held again) meanwhile
                lost = hold.run_id not in answer
                reason = None if lost else answer[hold.run_id]
                if lost:
                    del self._held[hold.run_id]
                elif reason is not None and reason != hold.cancel_seen:
                    hold.cancel_seen = reason
                else:
                    continue
            if hold.flag is not None:
                hold.flag.set()
            if lost:
                self.logger.error("lease lost: another process took the run over", run=hold.run_id)
                self._call(hold, hold.on_lost, hold.run_id)
            elif reason is not None:
                self._call(hold, hold.on_cancel, hold.run_id, reason)

    def _call(self, hold: _Hold, fn: Callable[..., object], *args: object) -> None:
        try:
            hold.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # its loop is closed: nobody is left to tell
            self.logger.warn("heartbeat: the run's event loop is closed", run=hold.run_id)
