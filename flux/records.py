"""The stored form of a run and its steps: plain fields and JSON text, no live objects.

Storages keep these records; the runner changes them and asks the storage to save them.
Payloads (input, data, outputs) stay encoded JSON text here so that saving never has to
encode twice and a stored record can never alias a live dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .status import RunStatus, StepStatus


@dataclass
class StepRecord:
    name: str
    kind: str  # "step" or "commit"
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: float | None = None  # epoch seconds of the first attempt
    completed_at: float | None = None
    output_json: str | None = None
    error: str | None = None
    error_type: str | None = None
    #: ctx.data as it was before the step first ran: what `retry_step` restores.
    data_before: str | None = None
    waiting_for: str | None = None
    compensation_attempts: int = 0
    compensated_at: float | None = None
    #: Attempts cut short by the death of their process (ended by `max_crashes`).
    crashes: int = 0
    #: A branch's or a map item's changes to `ctx.data` (`{"set": {...}, "del": [...]}` as
    #: JSON), merged into the run's data when its group ends (SPEC §11).
    delta_json: str | None = None
    #: A map's items, as `items(ctx)` returned them once (a JSON list).
    items_json: str | None = None

    def copy(self) -> StepRecord:
        clone = object.__new__(StepRecord)
        clone.__dict__.update(self.__dict__)  # several times faster than dataclasses.replace
        return clone


@dataclass
class Lease:
    """Who executes a run, until when; `host` and `pid` let a restarted process on the
    same machine take over at once from a holder that is gone."""

    owner: str
    host: str
    pid: int
    expires_at: float
    #: Evidence that survives containers sharing a hostname: boot id, pid namespace, pid and
    #: the process's start time (see `flux.leases.process_identity`). Empty if unknown.
    identity: str = ""


@dataclass
class RunRecord:
    id: str
    name: str
    status: RunStatus
    input_json: str
    data_json: str = "{}"
    shape: list[list[str]] = field(default_factory=list)
    version: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    error_step: str | None = None
    waiting_for: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    completed_at: float | None = None
    #: Number of the last trace event emitted for the run, so numbering survives resumes.
    seq: int = 0
    lease: Lease | None = None
    #: Incremented by each save, so a storage can tell which of its writes is the latest.
    rev: int = 0
    #: Set by `engine.cancel` (any process): the reason the run is to be cancelled. The holder
    #: sees it at its next heartbeat; a rollback that follows it ends `cancelled`.
    cancel_reason: str | None = None
    #: Epoch seconds at which a sleeping step wakes, or a wait for a signal times out (SPEC §10).
    wake_at: float | None = None
    #: What happens at `wake_at`: "sleep" (the step completes), "timeout" (the step fails with
    #: `SignalTimeoutError`) or "default:" + the JSON of the wait's default (it completes with it).
    timer: str | None = None
    #: Epoch seconds after which the run is cancelled (`DeadlineExceededError`), if any.
    deadline: float | None = None
    #: (schedule id, slot in ISO 8601 UTC) of a run a schedule started, for its `workflow:start`.
    schedule: tuple[str, str] | None = None
    #: The run that started this one with `.call` (its id is "<parent id>/<step>").
    parent_id: str | None = None

    def due_at(self) -> float | None:
        """When a worker is to take this suspended run (its wake time or its deadline, the
        earlier); None for a run that is not suspended or waits for a signal only. What the
        SQL storages store, indexed, to find due runs without a scan."""
        if self.status is not RunStatus.SUSPENDED:
            return None
        if self.wake_at is None:
            return self.deadline
        if self.deadline is None:
            return self.wake_at
        return min(self.wake_at, self.deadline)

    def copy(self) -> RunRecord:
        clone = object.__new__(RunRecord)
        clone.__dict__.update(self.__dict__)
        clone.shape = [list(s) for s in self.shape]
        clone.steps = [s.copy() for s in self.steps]
        clone.lease = replace(self.lease) if self.lease else None
        return clone
