"""An event loop in a thread of its own: what the engine's blocking `_sync` methods run on.

Any number of threads may call `run` at once; their coroutines share the one loop, as they
would in an async application. The loop's thread starts on first use.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "flux-engine-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `make()` on the loop and wait for it; raise what it raised, here."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
                self._thread.start()
            loop = self._loop

        async def carried() -> tuple[bool, Any]:
            # SystemExit or KeyboardInterrupt from a handler would stop the loop's thread:
            # carry every outcome back to the calling thread and raise it there.
            try:
                return True, await make()
            except BaseException as exc:
                return False, exc

        ok, value = asyncio.run_coroutine_threadsafe(carried(), loop).result()
        if not ok:
            raise value
        return cast(T, value)

    def close(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
