"""Group commit: the writes of the runs an engine executes at once, one transaction per batch.

A storage hands each write (a `Write`: what to do on its connection) to a `GroupCommit` and
awaits it. At most `slots` commits are in flight at a time (one for SQLite). A write that
finds a free slot, and no other write arriving in the same turn of its event loop, is
written at once on the caller's thread, so that a run alone pays no hop to another thread.
Other writes wait in a queue, and the writer thread commits all that are queued together
as soon as a slot is free: the writes that arrive while a commit is in flight form the next
batch, and nothing ever waits for a batch to fill.
Each write's await returns only after the COMMIT of its own batch, with its own outcome: the
storage's `commit` callback sets `result` or `error` per write, so that one run's lost lease
or refused row fails only that run.

Awaiters may sit on different event loops (the threads of `flux worker`): each loop is woken
once per batch, with all of its writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any


class Write:
    """One run's write: `fn(conn)` inside the batch's transaction. `single`: `fn` is one
    statement (SQLite undoes a failed statement alone, so it needs no savepoint). `alone`,
    if given, is how the storage writes it outside a batch (its own connection, its own
    transaction)."""

    __slots__ = ("alone", "error", "fn", "future", "loop", "result", "single", "what")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        what: str,
        *,
        single: bool = False,
        alone: Callable[[], Any] | None = None,
    ) -> None:
        self.fn = fn
        self.what = what
        self.single = single
        self.alone = alone
        self.result: Any = None
        self.error: BaseException | None = None
        self.future: asyncio.Future[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _resolve(writes: Sequence[Write]) -> None:
    for w in writes:
        fut = w.future
        if fut is None or fut.done():  # its awaiter was cancelled: the write stands regardless
            continue
        if w.error is not None:
            fut.set_exception(w.error)
        else:
            fut.set_result(w.result)


class GroupCommit:
    """The queue and the writer thread of one storage connection (or one shared one)."""

    def __init__(self, commit: Callable[[Sequence[Write]], None], name: str, *, slots: int = 1) -> None:
        #: Writes `batch` in one transaction; sets `result` / `error` on each write. Whatever it
        #: raises fails the writes it left without an outcome.
        self._commit = commit
        self._name = name
        self._cond = threading.Condition()
        self._queue: list[Write] = []
        #: Commits in flight, at most `slots` (SQLite has one writer; PostgreSQL takes more).
        self._busy = 0
        self._slots = slots
        self._closed = False
        self._arriving = 0  # writes in their turn of the loop before `submit` decides
        self._thread: threading.Thread | None = None
        #: Batches committed and writes in them (read by tests and benches).
        self.batches = 0
        self.writes = 0

    async def submit(self, write: Write, *, inline: bool = True) -> Any:
        """Write `write` and return its result once its batch is committed (or raise its error).
        With `inline`, a write that finds nothing in flight, and no other write arriving in
        the same turn of the event loop, is committed on this thread."""
        alone = False
        ready = getattr(asyncio.get_running_loop(), "_ready", None) if inline else None
        if ready is not None and not ready:
            # Nothing else is ready to run on this loop (asyncio's own queue of callbacks): no
            # other run can reach a write in this turn, so there is no turn to pay for.
            alone = True
        elif inline:
            # One turn of the loop lets the other runs in hand reach their own writes: then
            # they go together to the writer thread, and the loop goes on while it commits.
            with self._cond:
                self._arriving += 1
            try:
                await asyncio.sleep(0)
            finally:
                with self._cond:
                    alone = self._arriving == 1
                    self._arriving -= 1
        with self._cond:
            if self._closed:
                raise RuntimeError("closed")
            if alone and self._busy < self._slots and not self._queue:
                self._busy += 1
            else:
                loop = asyncio.get_running_loop()
                write.loop = loop
                write.future = loop.create_future()
                self._queue.append(write)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=f"flux-{self._name}", daemon=True)
                    self._thread.start()
                elif self._busy < self._slots:
                    self._cond.notify()
        if write.future is None:
            try:
                self._run_batch([write])
            finally:
                with self._cond:
                    self._busy -= 1
                    if self._queue:
                        self._cond.notify()
            return write.outcome()
        return await write.future

    def _run_batch(self, batch: Sequence[Write]) -> None:
        try:
            self._commit(batch)
        except BaseException as exc:
            for w in batch:
                if w.error is None:
                    w.error, w.result = exc, None
        self.batches += 1
        self.writes += len(batch)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._busy >= self._slots or not self._queue:
                    if self._closed and not self._queue:
                        return
                    self._cond.wait()
                batch, self._queue = self._queue, []
                self._busy += 1
            try:
                self._run_batch(batch)
            finally:
                with self._cond:
                    self._busy -= 1
                    if self._queue:
                        self._cond.notify()
            by_loop: dict[asyncio.AbstractEventLoop, list[Write]] = {}
            for w in batch:
                if w.loop is not None:
                    by_loop.setdefault(w.loop, []).append(w)
            for loop, writes in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody awaits
                    loop.call_soon_threadsafe(_resolve, writes)

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
