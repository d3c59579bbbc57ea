"""Leases: which process executes a run, until when, and when another may take it over.

A lease names its holder (an engine: host, pid and a random suffix), an expiry that the
holder's heartbeat (`flux.heartbeat`) pushes forward, and the holder's process identity:
boot id, pid namespace, pid and the process's start time. Another engine takes a run over
when the lease has expired, or at once when the identity proves the holder is gone: same
boot and same pid namespace as ours, and that pid no longer exists or is now another
process (its start time differs). A hostname and a pid alone prove nothing: containers
that share a hostname each have their own pid 7. Without an identity (a lease written by
Flux 0.1.0, or a system with no /proc) only expiry frees a run, except from an engine of
this very process that was closed.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

from .errors import RunStateError, StorageError
from .logger import FluxLogger
from .records import Lease, RunRecord
from .storage import WorkflowStorage

#: Owners of the engines of this process that are not closed: a lease held by one of them
#: is alive even though its identity is ours.
_LIVE_OWNERS: set[str] = set()
#: Owners of the engines of this process that were closed: their leases are dead.
_CLOSED_OWNERS: set[str] = set()


class Identity(NamedTuple):
    boot: str
    pid_ns: str
    pid: int
    start: str

    def __str__(self) -> str:
        return f"{self.boot}|{self.pid_ns}|{self.pid}|{self.start}"


def parse_identity(text: str) -> Identity | None:
    """The identity written by `process_identity`, or None for "" or anything else."""
    parts = text.split("|")
    if len(parts) != 4 or not all(parts) or not parts[2].isdigit():
        return None
    return Identity(parts[0], parts[1], int(parts[2]), parts[3])


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # Field 2 is the command in parentheses and may hold spaces or ')': fields 3.. follow the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def process_identity(pid: int | None = None) -> str:
    """This process's identity (or that of `pid`, as numbered in our pid namespace), as
    text for `Lease.identity`; "" where it cannot be known (no /proc: macOS, Windows)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    if pid is None:
        pid = os.getpid()
        # A /proc mounted from another pid namespace would make every probe below wrong.
        try:
            seen = int(os.readlink("/proc/self"))
        except (OSError, ValueError):
            return ""
        if seen != pid:
            return ""
    start = start_time(pid)
    if not boot or start is None:
        return ""
    return str(Identity(boot, pid_ns, pid, start))


def holder_gone(holder: str, ours: str, start_time_of: Callable[[int], str | None]) -> bool:
    """Whether the holder `holder` (an identity) is proved dead, seen from the process `ours`.

    Only on the same boot of the same machine and in the same pid namespace does a pid
    mean the same process for both; there, the holder is gone if `start_time_of(pid)` says
    there is no such process (None) or that it started at another time (the pid was reused).
    """
    theirs, mine = parse_identity(holder), parse_identity(ours)
    if theirs is None or mine is None:
        return False
    if theirs.boot != mine.boot or theirs.pid_ns != mine.pid_ns:
        return False
    if theirs.pid == mine.pid and theirs.start == mine.start:
        return False  # this very process: only the registry of closed engines tells
    return start_time_of(theirs.pid) != theirs.start


class Leases:
    """The leases of one engine."""

    def __init__(self, storage: WorkflowStorage, logger: FluxLogger, seconds: float) -> None:
        self.storage = storage
        self.logger = logger
        self.seconds = seconds
        self.host = socket.gethostname()
        self.identity = process_identity()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _LIVE_OWNERS.add(self.owner)

    def close(self) -> None:
        if self.owner in _LIVE_OWNERS:
            _LIVE_OWNERS.discard(self.owner)
            _CLOSED_OWNERS.add(self.owner)

    def new(self) -> Lease:
        return Lease(self.owner, self.host, os.getpid(), time.time() + self.seconds, self.identity)

    def dead_holder(self, lease: Lease | None) -> str | None:
        """The holder's owner id if it is proved dead before its lease expires: an engine of
        this process that was closed, or a process that `holder_gone` says is gone."""
        if lease is None or lease.owner == self.owner or lease.owner in _LIVE_OWNERS:
            return None
        if lease.owner in _CLOSED_OWNERS:
            return lease.owner
        # Another hostname is never judged early (its identity would say so as well).
        if lease.host != self.host or not lease.identity or not self.identity:
            return None
        return lease.owner if holder_gone(lease.identity, self.identity, start_time) else None

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
