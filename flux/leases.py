"""Leases: which process executes a run, until when, and when another may take it over.

A lease names its holder (an engine: host, pid and a random suffix) and an expiry that the
holder's heartbeat pushes forward. Another engine takes a run over only when the lease has
expired, or at once when the holder is a process of the same host that no longer exists
(a crashed web worker restarted by its supervisor must not sit idle for the lease time).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from typing import Any

from .errors import RunStateError, StorageError
from .logger import FluxLogger
from .records import Lease, RunRecord
from .storage import WorkflowStorage

#: Owners of the engines of this process that are not closed: a lease held by one of them
#: is alive even though its pid is ours.
_LIVE_OWNERS: set[str] = set()


def pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # no signal 0 there: assume alive and wait for the lease
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Leases:
    """The leases of one engine."""

    def __init__(self, storage: WorkflowStorage, logger: FluxLogger, seconds: float) -> None:
        self.storage = storage
        self.logger = logger
        self.seconds = seconds
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _LIVE_OWNERS.add(self.owner)

    def close(self) -> None:
        _LIVE_OWNERS.discard(self.owner)

    def new(self) -> Lease:
        return Lease(self.owner, self.host, os.getpid(), time.time() + self.seconds)

    def dead_holder(self, lease: Lease | None) -> str | None:
        """The holder's owner id if it is a process of this host that no longer exists."""
        if lease is None or lease.host != self.host or lease.owner == self.owner:
            return None
        if lease.pid == os.getpid():  # an engine of this process: gone once closed
            return None if lease.owner in _LIVE_OWNERS else lease.owner
        return None if pid_alive(lease.pid) else lease.owner

    async def claim(self, run: RunRecord, *, take_from: str | None = None, strict: bool = True) -> bool:
        """Take the run's lease; with `strict`, say why not with a `RunStateError`."""
        if take_from is None:
            take_from = self.dead_holder(run.lease)
        if await self.storage.acquire_lease(run.id, self.new(), take_from=take_from):
            return True
        if strict:
            raise RunStateError(
                f"run '{run.id}' ({run.name}) is being executed by another process "
                f"({run.lease.owner if run.lease else 'unknown'})"
            )
        return False

    async def release(self, run_id: str) -> None:
        try:
            await self.storage.release_lease(run_id, self.owner)
        except StorageError as exc:
            self.logger.error(f"could not release the lease: {exc}", run=run_id)

    async def heartbeat(self, run_id: str, driver: Any = None) -> None:
        """Renew the lease every third of its time until cancelled, or until it is lost."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                held = await self.storage.renew_lease(run_id, self.owner, time.time() + self.seconds)
            except StorageError as exc:
                self.logger.error(f"lease renewal failed: {exc}", run=run_id)
                continue
            if not held:
                self.logger.error("lease lost: another process took the run over", run=run_id)
                if driver is not None:
                    driver.interrupt(lost=True)
                return
