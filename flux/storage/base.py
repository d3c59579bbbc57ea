"""The storage protocol every backend implements, and the URL factory that picks one.

A storage keeps runs (`RunRecord`, with one `StepRecord` per step) and the lease that
says which process executes a run. The engine calls it at a run's creation, once per
finished step (one atomic write of the run row and the changed step rows) and to claim,
renew and release leases. `tests/storage/` is the conformance suite: a backend, the
user's own included, is correct when it passes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..records import Lease, RunRecord
from ..schedules import ScheduleRecord
from ..status import RunStatus


@runtime_checkable
class WorkflowStorage(Protocol):
    #: False for storages that live and die with the process (no leases, no recovery).
    durable: bool

    async def create_run(self, run: RunRecord) -> bool:
        """Insert `run` (with its lease, if any). False if the id exists: nothing changes."""
        ...

    async def load_run(self, run_id: str) -> RunRecord | None:
        """The run with its steps, or None."""
        ...

    async def save_run(self, run: RunRecord, steps: Sequence[int], owner: str | None) -> None:
        """Atomically write the run's own fields and the steps at the given indexes.

        With `owner`, the write happens only while `owner` holds the run's lease; otherwise
        it raises `LeaseLostError` and writes nothing. A run saved in a state where nobody
        executes it (suspended, completed, failed, ...) gives up its lease in the same write.
        A child run (`parent_id`) saved in a final state makes its parent due in the same
        transaction if the parent is suspended waiting for it (`waiting_for` "child:<id>"):
        `wake_at` and `due_at` = the child's `updated_at`, `timer` "child"; a run saved
        suspended on a child that has already ended is made due so in the same write.
        `steps` may name indexes beyond the stored ones (a definition that grew); stored
        steps past the end of `run.steps` (a definition that shrank) are dropped.
        """
        ...

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
        """Runs, newest first (by creation), filtered by workflow name, statuses, the run that
        started them with `.call` (`parent_id`) and the start of their id (`id_prefix`,
        matched exactly, case and all), each by an index."""
        ...

    async def acquire_lease(self, run_id: str, lease: Lease, *, take_from: str | None = None) -> bool:
        """Give the run's lease to `lease.owner` if it is free, expired, already theirs,
        or held by `take_from` (a holder known to be dead). True if it is now theirs."""
        ...

    async def renew_lease(self, run_id: str, owner: str, expires_at: float) -> bool:
        """Extend the lease if `owner` still holds it."""
        ...

    async def claim_next(
        self, names: Sequence[str], lease: Lease, *, now: float | None = None
    ) -> RunRecord | None:
        """Give `lease` a run of these workflows that waits for a worker: a suspended one whose
        `due_at()` is at or before `now` (the engine's clock; default: the system's), the
        earliest first, found by an index; else the oldest pending one, or running / rolling
        back with no lease or an expired one. A run whose lease is held is never claimed
        (lease expiry is judged by real time). Atomic: two workers never claim the same run.
        Returns the claimed run with its steps, or None."""
        ...

    async def next_due(self, names: Sequence[str]) -> float | None:
        """The earliest `due_at()` among the suspended runs of these workflows (by an index,
        not a scan), or None: how long an idle worker may wait."""
        ...

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Drop the lease if `owner` holds it."""
        ...

    async def request_cancel(self, run_id: str, reason: str) -> RunRecord | None:
        """Record that the run is to be cancelled (`cancel_reason`), whoever holds it; no
        other field changes. Its holder sees the request at its next heartbeat. Returns the
        run as it stands after the write (None if there is no such run). Written only while
        the run is pending, running, suspended or rolling back; a finished run is returned
        unchanged."""
        ...

    async def prune(self, before: float, statuses: Sequence[RunStatus], *, batch: int = 500) -> int:
        """Remove the runs in `statuses` whose last change (`updated_at`) is before `before`,
        with their steps, `batch` runs per transaction (so that no lock is held long), found
        by an index. Returns how many runs were removed. A run changed meanwhile is kept."""
        ...

    def heartbeat_sync(self, owner: str, run_ids: Sequence[str], expires_at: float) -> dict[str, str | None]:
        """Extend to `expires_at` the leases that `owner` still holds among `run_ids`.

        Called from the heartbeat thread, never from the event loop's, on a connection of
        its own, so that a blocked loop or a storage call waiting out a lock cannot stop it.
        Returns, for each run whose lease `owner` still holds, None, or the run's
        `cancel_reason` if a cancel was requested. A run missing from the answer has been
        lost (taken over, or deleted).
        """
        ...

    async def close(self) -> None: ...

    # ------------------------------------------------------------------ schedules (SPEC §10)

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord | None:
        """Store `schedule` if no schedule has its id and return None; otherwise change
        nothing and return the stored one (the engine compares the definitions)."""
        ...

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every stored schedule, by id."""
        ...

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove the schedule; False if there was none. The runs it started stay."""
        ...

    async def due_schedules(self, names: Sequence[str], now: float) -> list[ScheduleRecord]:
        """The schedules of these workflows whose `next_due` is at or before `now`, oldest
        due first (by an index: this is asked on every tick of every worker)."""
        ...

    async def next_schedule_due(self, names: Sequence[str]) -> int | None:
        """The smallest `next_due` of the schedules of these workflows, or None."""
        ...

    async def advance_schedule(
        self, schedule_id: str, expected: int, next_due: int, last_slot: int | None
    ) -> bool:
        """Set `next_due` (and `last_slot`, unless None) if `next_due` is still `expected`:
        of several workers that handled one due slot, one moves the schedule on."""
        ...
