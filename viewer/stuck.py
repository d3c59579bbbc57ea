"""Which stored runs are stuck, and what unsticks each: pure, from a record and the time.

A run is stuck when nobody will move it on by themselves:

- ``running`` or ``rolling_back`` with no lease, an expired lease, or a holder proved dead
  (``flux.leases``: a process of this machine that is gone): *recover* it (resume, which
  takes the lease over and goes on from the stored state);
- not finished and past its deadline (``RunRecord.deadline``) with nobody acting on it:
  *cancel* it;
- ``suspended`` for longer than the threshold (``flux dev --stuck-after``) waiting for a
  signal: *signal* it; asleep with its wake time passed that long ago (no worker took it
  up): *recover* it. A run asleep until a time still ahead is not stuck: its timer wakes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flux.records import Lease, RunRecord
from flux.status import RUN_TERMINAL, RunStatus

#: ``--stuck-after``'s default: a day suspended.
DEFAULT_STUCK_AFTER_S = 24 * 3600.0

#: Statuses in which a run is being executed by whoever holds its lease.
EXECUTING = frozenset({RunStatus.RUNNING, RunStatus.ROLLING_BACK})
#: What the stuck view reads from storage (by the status index).
CANDIDATES = (RunStatus.RUNNING, RunStatus.ROLLING_BACK, RunStatus.SUSPENDED, RunStatus.PENDING)


@dataclass(frozen=True)
class Stuck:
    #: ``no_lease``, ``lease_expired``, ``holder_dead``, ``past_deadline``, ``suspended_long``,
    #: ``overdue``.
    reason: str
    #: What the view says about it, in words.
    detail: str
    #: The action that unsticks it: ``recover``, ``cancel`` or ``signal``.
    action: str


def span(seconds: float) -> str:
    """``seconds`` in the largest whole unit that fits: ``3d``, ``5h``, ``12m``, ``40s``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def classify(
    run: RunRecord,
    now: float,
    *,
    stuck_after: float = DEFAULT_STUCK_AFTER_S,
    holder_dead: Callable[[Lease], bool] = lambda lease: False,
) -> Stuck | None:
    """Why ``run`` is stuck at ``now`` (epoch seconds), or None if it is not."""
    if run.status in RUN_TERMINAL:
        return None
    if run.status in EXECUTING:
        lease = run.lease
        if lease is None:
            return Stuck("no_lease", f"{run.status.value} with no process holding it", "recover")
        if holder_dead(lease):
            return Stuck("holder_dead", f"its process ({lease.owner}) is gone", "recover")
        if lease.expires_at < now:
            ago = span(now - lease.expires_at)
            return Stuck("lease_expired", f"its lease ({lease.owner}) expired {ago} ago", "recover")
    if run.deadline is not None and run.deadline < now:
        return Stuck("past_deadline", f"past its deadline by {span(now - run.deadline)}", "cancel")
    if run.status is not RunStatus.SUSPENDED:
        return None
    if run.waiting_for:
        if now - run.updated_at > stuck_after:
            waited = span(now - run.updated_at)
            return Stuck("suspended_long", f"waiting for {run.waiting_for!s} for {waited}", "signal")
        return None
    if run.wake_at is not None:
        if now - run.wake_at > stuck_after:
            late = span(now - run.wake_at)
            return Stuck("overdue", f"due {late} ago, and no worker took it up", "recover")
        return None
    if now - run.updated_at > stuck_after:  # suspended with nothing to wake it
        return Stuck("suspended_long", f"suspended for {span(now - run.updated_at)}", "cancel")
    return None
