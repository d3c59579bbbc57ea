"""`MemoryStorage`: the reference storage; runs live as long as the process."""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import replace

from ..errors import LeaseLostError
from ..records import Lease, RunRecord
from ..schedules import ScheduleRecord
from ..status import CLAIMABLE, EXECUTING, RUN_TERMINAL, RunStatus
from ._cancel import CANCELLABLE, saved_reason
from ._children import CHILD_TIMER, awaited_child, ends_child, ends_parent, orphan_reason, waiting_for


class MemoryStorage:
    """Keeps copies of the records in a dict: nothing a caller holds aliases what is stored."""

    durable = False

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._schedules: dict[str, ScheduleRecord] = {}
        #: (due_at, run id) of the suspended runs with a wake time or deadline: the index that
        #: finds due runs. Entries go stale when a run changes; they are dropped when met.
        self._due: list[tuple[float, str]] = []

    def _track(self, run: RunRecord) -> None:
        due = run.due_at()
        if due is not None:
            heapq.heappush(self._due, (due, run.id))

    def _live(self, entry: tuple[float, str]) -> RunRecord | None:
        run = self._runs.get(entry[1])
        return run if run is not None and run.due_at() == entry[0] else None

    async def create_run(self, run: RunRecord) -> bool:
        if run.id in self._runs:
            return False
        self._runs[run.id] = run.copy()
        self._track(run)
        return True

    async def load_run(self, run_id: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        return run.copy() if run else None

    async def save_run(self, run: RunRecord, steps: Sequence[int], owner: str | None) -> None:
        stored = self._runs.get(run.id)
        if stored is None:
            raise LeaseLostError(f"run '{run.id}' is not stored")
        if owner is not None and (stored.lease is None or stored.lease.owner != owner):
            raise LeaseLostError(f"run '{run.id}': the lease of {owner} was taken over")
        kept, lease, shape = stored.steps, stored.lease, stored.shape
        reason = saved_reason(stored.status, stored.cancel_reason, run.cancel_reason)
        stored.__dict__.update(run.__dict__)
        stored.cancel_reason = reason
        stored.steps = kept
        stored.lease = lease if run.status in EXECUTING else None
        stored.shape = shape if shape == run.shape else [list(s) for s in run.shape]
        del kept[len(run.steps) :]
        for i in steps:
            copy = run.steps[i].copy()
            if i < len(kept):
                kept[i] = copy
            else:
                kept.append(copy)
        self._track(stored)
        self._link(stored)

    def _link(self, run: RunRecord) -> None:
        """A child's end wakes its parent; a parent that suspends on an ended child wakes at
        once (`_children`): in the same write, as the SQL storages do it."""
        if ends_child(run):
            assert run.parent_id is not None
            parent = self._runs.get(run.parent_id)
            awaits = waiting_for(run.id)
            if parent is not None and parent.status is RunStatus.SUSPENDED and parent.waiting_for == awaits:
                self._wake(parent, run.updated_at)
        child_id = awaited_child(run)
        if child_id is not None:
            child = self._runs.get(child_id)
            if child is not None and child.status in RUN_TERMINAL:
                self._wake(run, run.updated_at)
        if ends_parent(run):
            reason = orphan_reason(run)
            for child in self._runs.values():
                if child.parent_id == run.id and child.status in CANCELLABLE and child.cancel_reason is None:
                    child.cancel_reason = reason
                    if child.status is RunStatus.SUSPENDED:
                        child.wake_at = run.updated_at
                        self._track(child)

    def _wake(self, run: RunRecord, at: float) -> None:
        run.wake_at = at
        run.timer = CHILD_TIMER
        self._track(run)

    async def request_cancel(self, run_id: str, reason: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        if run is None:
            return None
        if run.status in CANCELLABLE and run.cancel_reason is None:
            run.cancel_reason = reason
        return run.copy()

    async def list_runs(
        self,
        *,
        name: str | None = None,
        status: Sequence[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent_id: str | None = None,
        id_prefix: str | None = None,
    ) -> list[RunRecord]:
        wanted = set(status) if status else None
        runs = [
            r
            for r in self._runs.values()
            if (name is None or r.name == name)
            and (wanted is None or r.status in wanted)
            and (parent_id is None or r.parent_id == parent_id)
            and (not id_prefix or r.id.startswith(id_prefix))
        ]
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return [r.copy() for r in runs[offset : offset + limit]]

    async def acquire_lease(self, run_id: str, lease: Lease, *, take_from: str | None = None) -> bool:
        run = self._runs.get(run_id)
        if run is None:
            return False
        held = run.lease
        if held is None or held.owner in (lease.owner, take_from) or held.expires_at < time.time():
            run.lease = replace(lease)
            return True
        return False

    async def renew_lease(self, run_id: str, owner: str, expires_at: float) -> bool:
        run = self._runs.get(run_id)
        if run is None or run.lease is None or run.lease.owner != owner:
            return False
        run.lease.expires_at = expires_at
        return True

    async def claim_next(
        self, names: Sequence[str], lease: Lease, *, now: float | None = None
    ) -> RunRecord | None:
        real = time.time()
        at = real if now is None else now
        passed: list[tuple[float, str]] = []
        due = self._due
        claimed = None
        while due and due[0][0] <= at:
            entry = heapq.heappop(due)
            run = self._live(entry)
            if run is None:
                continue  # stale: the run changed since
            passed.append(entry)  # kept: the run is due until its holder saves it
            if run.name in names and (run.lease is None or run.lease.expires_at < real):
                run.lease = replace(lease)
                claimed = run.copy()
                break
        for entry in passed:
            heapq.heappush(due, entry)
        if claimed is not None:
            return claimed
        now = real
        waiting = [
            r for r in self._runs.values()
            if r.name in names and r.status in CLAIMABLE and (r.lease is None or r.lease.expires_at < now)
        ]  # fmt: skip
        if not waiting:
            return None
        run = min(waiting, key=lambda r: r.created_at)
        run.lease = replace(lease)
        return run.copy()

    async def next_due(self, names: Sequence[str]) -> float | None:
        due = self._due
        while due and self._live(due[0]) is None:
            heapq.heappop(due)
        if not due:
            return None
        if self._runs[due[0][1]].name in names:
            return due[0][0]
        return min(
            (e[0] for e in due if self._live(e) is not None and self._runs[e[1]].name in names), default=None
        )

    async def release_lease(self, run_id: str, owner: str) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.lease is not None and run.lease.owner == owner:
            run.lease = None

    async def close(self) -> None:
        return None

    def heartbeat_sync(self, owner: str, run_ids: Sequence[str], expires_at: float) -> dict[str, str | None]:
        # Called from the heartbeat thread: each run's lease is read once, so a lease that the
        # loop's thread replaces meanwhile is left as the loop wrote it.
        held: dict[str, str | None] = {}
        for run_id in run_ids:
            run = self._runs.get(run_id)
            lease = run.lease if run is not None else None
            if run is not None and lease is not None and lease.owner == owner:
                lease.expires_at = expires_at
                held[run_id] = run.cancel_reason
        return held

    # ------------------------------------------------------------------ schedules (SPEC §10)

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord | None:
        stored = self._schedules.get(schedule.id)
        if stored is not None:
            return stored.copy()
        self._schedules[schedule.id] = schedule.copy()
        return None

    async def list_schedules(self) -> list[ScheduleRecord]:
        return [self._schedules[k].copy() for k in sorted(self._schedules)]

    async def delete_schedule(self, schedule_id: str) -> bool:
        return self._schedules.pop(schedule_id, None) is not None

    async def due_schedules(self, names: Sequence[str], now: float) -> list[ScheduleRecord]:
        due = [s for s in self._schedules.values() if s.workflow in names and s.next_due <= now]
        return [s.copy() for s in sorted(due, key=lambda s: (s.next_due, s.id))]

    async def next_schedule_due(self, names: Sequence[str]) -> int | None:
        return min((s.next_due for s in self._schedules.values() if s.workflow in names), default=None)

    async def advance_schedule(
        self, schedule_id: str, expected: int, next_due: int, last_slot: int | None
    ) -> bool:
        stored = self._schedules.get(schedule_id)
        if stored is None or stored.next_due != expected:
            return False
        stored.next_due = next_due
        if last_slot is not None:
            stored.last_slot = last_slot
        return True

    # ------------------------------------------------------------------ retention (h/lean)

    def _unread_child(self, run: RunRecord) -> bool:
        """A finished child whose parent has not read it yet: kept by `prune`."""
        parent = self._runs.get(run.parent_id) if run.parent_id is not None else None
        return parent is not None and parent.status not in RUN_TERMINAL

    async def prune(self, before: float, statuses: Sequence[RunStatus], *, batch: int = 500) -> int:
        wanted = frozenset(statuses)
        doomed = [
            r.id
            for r in self._runs.values()
            if r.status in wanted and r.updated_at < before and not self._unread_child(r)
        ]
        for run_id in doomed:  # no lock to bound here: the dict is the process's own
            del self._runs[run_id]  # its stale entry in `_due` is dropped when met
        return len(doomed)
