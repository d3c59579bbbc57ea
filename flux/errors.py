"""Every error Flux raises derives from :class:`FluxError`.

    FluxError
    ├── WorkflowDefinitionError   a workflow is written wrongly (raised by the builder)
    ├── InputValidationError      the input does not match `.input(T)`; nothing was stored
    ├── SerializationError        a value in input, data or an output cannot be stored
    ├── RunNotFoundError          no run has that id
    ├── RunStateError             the run cannot do that now (signal to a finished run, ...)
    │   └── RunConflictError      the id exists with another workflow or another input
    ├── WorkflowVersionError      the definition changed under a run's finished steps
    ├── StorageError              the storage failed, or its file is not a Flux database
    │   └── LeaseLostError        another process took the run over: this one stops at once
    ├── WaitTimeoutError          `wait` gave up before the run ended (also a TimeoutError)
    ├── ScheduleError             a schedule is written wrongly (cron, timezone, every, ...)
    │   └── ScheduleConflictError the schedule id exists with another definition
    └── StepError                 the families below end a step attempt
        ├── FatalError            raised by a handler: fail the step at once, no retry
        │   └── ChildWorkflowError  a child run (`.call`) failed for good: no retry either
        ├── StepTimeoutError      the attempt ran past its timeout
        ├── CommitInterruptedError  a commit started but its end was never recorded
        ├── StepCrashedError      the step's process died `max_crashes` times in it
        ├── SignalTimeoutError    a wait for a signal passed its timeout
        ├── DeadlineExceededError the run passed its deadline (it is cancelled)
        └── RunCancelledError     the run was cancelled (`engine.cancel`) while the step ran

Messages name the workflow, run, step and field involved.
"""

from __future__ import annotations


class FluxError(Exception):
    """Root of every error raised by Flux."""


class WorkflowDefinitionError(FluxError):
    """The workflow definition is invalid; raised where it is written."""


class InputValidationError(FluxError):
    """The input given to `execute` does not match the workflow's input type."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SerializationError(FluxError):
    """A value cannot be serialised; `path` says where (`data.order.client`)."""

    def __init__(self, message: str, *, path: str = "", step: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.step = step


class RunNotFoundError(FluxError):
    """No stored run has the given id."""


class RunStateError(FluxError):
    """The run is not in a state that allows the operation."""


class RunConflictError(RunStateError):
    """A run with this id exists with a different workflow or input."""


class WorkflowVersionError(FluxError):
    """The definition differs from the run's at a step that has already finished."""


class StorageError(FluxError):
    """The storage backend failed or holds something Flux cannot read."""


class WaitTimeoutError(FluxError, TimeoutError):
    """`engine.wait(id, timeout=...)` gave up before the run finished or suspended."""


class ScheduleError(FluxError, ValueError):
    """A schedule's definition is invalid (a cron field, the timezone, `every`, `catch_up`);
    raised by `engine.schedule`, and nothing is stored."""


class ScheduleConflictError(ScheduleError):
    """A schedule with this id exists with a different definition."""


class StepError(FluxError):
    """Base of the errors that end a step attempt."""


class FatalError(StepError):
    """A business error: the step fails at once and is never retried."""


class StepTimeoutError(StepError):
    """A step attempt did not finish within its timeout."""


class CommitInterruptedError(StepError):
    """A commit step started but its end was not recorded: it may have happened."""


class LeaseLostError(StorageError):
    """Another process took over the run's lease; this process must stop driving it."""


class StepCrashedError(StepError):
    """The process died while running the step `max_crashes` times: it fails for good."""


class SignalTimeoutError(StepError):
    """A `Flux.wait(..., timeout=...)` passed its timeout with no signal and no default."""


class DeadlineExceededError(StepError):
    """The run passed its `deadline`; it is cancelled."""


class ChildWorkflowError(FatalError):
    """A child run started by `.call` failed for good (it has had its own retries and its
    saga): the call step fails at once, never retried, since its child would not run again."""


class RunCancelledError(StepError):
    """The run was cancelled while this step ran (`engine.cancel`)."""
