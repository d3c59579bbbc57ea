"""`flux worker`: processes that claim waiting runs from a shared storage and execute them.

Each of the `concurrency` workers of a process is a thread with its own event loop, engine
and storage connection: blocking database calls and sync handlers of one worker never hold
up the others. SIGTERM (or SIGINT) stops claiming; runs in hand are finished within
`grace` seconds, and the leases of those still unfinished are released so that another
worker takes them over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from .builder import Workflow
from .engine import FluxEngine
from .logger import FluxLogger, StdlibLogger
from .storage import open_storage
from .trace import JsonFileTraceSink

_log = logging.getLogger("flux")


@dataclass
class WorkerPool:
    flows: Sequence[Workflow[Any]]
    storage: str
    concurrency: int = 1
    burst: bool = False
    poll: float = 0.2
    grace: float = 30.0
    trace: str | None = None
    lease_seconds: float = 30.0
    logger: FluxLogger = field(default_factory=StdlibLogger)
    stopping: threading.Event = field(default_factory=threading.Event)
    executed: int = 0
    #: What ended a worker thread early: the process then exits non-zero (never silently).
    errors: list[BaseException] = field(default_factory=list)
    _engines: list[FluxEngine] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _worker(self) -> None:
        async def main() -> int:
            engine = FluxEngine(
                storage=open_storage(self.storage),
                logger=self.logger,
                trace=JsonFileTraceSink(self.trace, reset=False) if self.trace else None,
                lease_seconds=self.lease_seconds,
            )
            with self._lock:
                self._engines.append(engine)
            try:
                await engine.recover(self.flows)  # runs of a dead process of this host, at once
                return await engine.work(
                    self.flows, stop=self.stopping.is_set, burst=self.burst, poll=self.poll
                )
            finally:
                await engine.close()

        try:
            done = asyncio.run(main())
        except BaseException as exc:
            _log.error("flux worker: a worker thread stopped on %r; stopping the others", exc, exc_info=exc)
            with self._lock:
                self.errors.append(exc)
            self.stopping.set()
            return
        with self._lock:
            self.executed += done

    def run(self) -> int:
        """Run the workers until they stop; return the number of runs executed."""
        threads = [
            threading.Thread(target=self._worker, name=f"flux-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) and not self.stopping.is_set():
            for t in threads:
                t.join(timeout=0.2)
        deadline = time.monotonic() + self.grace
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        left = self._release_unfinished()
        if left:
            _log.warning("flux worker: released %d unfinished run(s) after the %.0fs grace", left, self.grace)
            os._exit(1)  # threads stuck in a handler cannot be interrupted
        return self.executed

    def _release_unfinished(self) -> int:
        left = 0
        with self._lock:
            engines = list(self._engines)
        storage = None
        for engine in engines:
            for run_id in list(engine._active):
                storage = storage or open_storage(self.storage)
                asyncio.run(storage.release_lease(run_id, engine.owner))
                left += 1
        if storage is not None:
            asyncio.run(storage.close())
        return left

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if not self.stopping.is_set():
            _log.warning("flux worker: stopping; finishing the runs in hand (grace %.0fs)", self.grace)
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
