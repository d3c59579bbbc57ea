"""Run and step states, and the one table of legal transitions between them."""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """Where a run stands."""

    #: Stored and waiting for a worker to start it.
    PENDING = "pending"
    #: A process is executing its steps.
    RUNNING = "running"
    #: A step returned `Flux.wait(...)`; the run waits for `signal`.
    SUSPENDED = "suspended"
    #: Every step completed or was skipped.
    COMPLETED = "completed"
    #: A step failed for good and there was nothing to compensate.
    FAILED = "failed"
    #: A step failed for good; compensations are running.
    ROLLING_BACK = "rolling_back"
    #: A step failed for good and every compensation succeeded.
    ROLLED_BACK = "rolled_back"
    #: A compensation failed for good.
    ROLLBACK_FAILED = "rollback_failed"
    #: Cancelled by `engine.cancel` (or past its deadline); its completed steps compensated.
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class StepStatus(str, Enum):
    """Where one step of a run stands."""

    #: Not started yet.
    PENDING = "pending"
    #: An attempt is in flight (for a commit: its start is durably recorded).
    RUNNING = "running"
    #: Finished; its output is stored.
    COMPLETED = "completed"
    #: Failed for good (retries exhausted, `FatalError`, timeout, interrupted commit).
    FAILED = "failed"
    #: Its `when` condition was false.
    SKIPPED = "skipped"
    #: Returned `Flux.wait(...)` and waits for the signal.
    SUSPENDED = "suspended"
    #: Its compensation is running.
    COMPENSATING = "compensating"
    #: Its compensation succeeded: its effect is undone.
    COMPENSATED = "compensated"
    #: Its compensation failed for good.
    COMPENSATION_FAILED = "compensation_failed"
    #: It was in flight (or waiting) when the run was cancelled.
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


R = RunStatus
S = StepStatus

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    R.PENDING: frozenset({R.RUNNING, R.CANCELLED}),
    R.RUNNING: frozenset({R.RUNNING, R.SUSPENDED, R.COMPLETED, R.FAILED, R.ROLLING_BACK, R.CANCELLED}),
    # signal (enqueue=True: for a worker), cancel
    R.SUSPENDED: frozenset({R.RUNNING, R.PENDING, R.ROLLING_BACK, R.CANCELLED}),
    R.COMPLETED: frozenset({R.RUNNING, R.PENDING}),  # retry_step
    R.FAILED: frozenset({R.RUNNING, R.PENDING}),  # resume, retry_step
    R.ROLLING_BACK: frozenset({R.ROLLING_BACK, R.ROLLED_BACK, R.ROLLBACK_FAILED, R.CANCELLED}),
    R.ROLLED_BACK: frozenset({R.RUNNING, R.PENDING}),
    R.ROLLBACK_FAILED: frozenset({R.RUNNING, R.PENDING}),
    R.CANCELLED: frozenset({R.RUNNING, R.PENDING}),  # retry_step
}

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED}),
    S.RUNNING: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.SUSPENDED, S.CANCELLED}),
    S.SUSPENDED: frozenset({S.COMPLETED, S.RUNNING, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset({S.COMPENSATING}),
    S.COMPENSATING: frozenset({S.COMPENSATED, S.COMPENSATION_FAILED}),
    S.FAILED: frozenset(),
    S.SKIPPED: frozenset(),
    S.COMPENSATED: frozenset(),
    S.COMPENSATION_FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: Run states in which no process is working on the run and none will without being asked.
RUN_TERMINAL = frozenset({R.COMPLETED, R.FAILED, R.ROLLED_BACK, R.ROLLBACK_FAILED, R.CANCELLED})
#: Run states in which a process holds (or should hold) the run's lease.
EXECUTING = frozenset({R.RUNNING, R.ROLLING_BACK})
#: Run states a worker may claim (a running one only once its lease is gone or expired).
CLAIMABLE = frozenset({R.PENDING, R.RUNNING, R.ROLLING_BACK})
#: Step states that a resume does not run again.
STEP_DONE = frozenset({S.COMPLETED, S.SKIPPED})


class IllegalTransition(RuntimeError):
    """A transition outside the table: a bug in Flux, never a user error."""


def check_run(current: RunStatus, new: RunStatus) -> RunStatus:
    if new not in RUN_TRANSITIONS[current]:
        raise IllegalTransition(f"run: {current.value} -> {new.value}")
    return new


def check_step(current: StepStatus, new: StepStatus) -> StepStatus:
    if new not in STEP_TRANSITIONS[current]:
        raise IllegalTransition(f"step: {current.value} -> {new.value}")
    return new
