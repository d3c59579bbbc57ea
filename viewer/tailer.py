"""Follow the trace file: every change on disk becomes a ``TraceStore.sync``.

The parent directory is watched rather than the file, so that a file that does
not exist yet, or is deleted and written again, is picked up without the
viewer creating anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from pathlib import Path

from watchfiles import Change, awatch

from .store import TraceStore

log = logging.getLogger("viewer")

#: The rust watcher reports once no new change came for STEP_MS, or at the
#: latest after DEBOUNCE_MS of changes: the first sits directly on the
#: append-to-screen latency, the second bounds how often a steady stream of
#: appends is synced (a burst is still one sync, one notification).
DEBOUNCE_MS = 25
STEP_MS = 2
#: Even with no change reported, look at the file this often: a missed
#: notification (network file systems, some containers) then costs a second.
RESCAN_MS = 1000
#: How often to look for a parent directory that does not exist yet.
DIR_POLL_S = 0.5


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        st = directory.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


async def tail(store: TraceStore, stop: asyncio.Event) -> None:
    """Keep ``store`` in step with its file until ``stop`` is set.

    A failure is logged and the watch starts again: pages read the file on
    every request anyway, but live updates must not stop for good.
    """
    while not stop.is_set():
        try:
            await _follow(store, stop)
        except Exception:
            log.exception("following %s failed; starting again", store.path)
            await _pause(stop)


async def _pause(stop: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), DIR_POLL_S)


async def _follow(store: TraceStore, stop: asyncio.Event) -> None:
    await store.sync()
    name = store.path.name

    def ours(change: Change, path: str) -> bool:
        return Path(path).name == name

    while not stop.is_set():
        parent = store.path.parent
        watched = _identity(parent)
        if watched is None:
            await _pause(stop)
            await store.sync()
            continue
        try:
            async for _ in awatch(
                parent,
                watch_filter=ours,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=stop,
                recursive=False,
                rust_timeout=RESCAN_MS,
                yield_on_timeout=True,
            ):
                await store.sync()
                if _identity(parent) != watched:
                    break  # deleted, or deleted and made again: watch the new one
        except (OSError, RuntimeError) as exc:  # the directory vanished mid-watch
            log.debug("watch on %s ended: %s", parent, exc)
        if not stop.is_set():
            await store.sync()
