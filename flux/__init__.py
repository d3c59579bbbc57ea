"""Flux: workflows as code, with retries, timeouts, sagas, signals and durable runs.

The public API is what this module exports; everything else is private.
"""

from typing import TYPE_CHECKING

from .backoff import Backoff
from .builder import StepDefinition, Workflow, commit, create_workflow, step
from .context import StepExecution, WorkflowContext
from .engine import FluxEngine
from .errors import (
    ChildWorkflowError,
    CommitInterruptedError,
    DeadlineExceededError,
    FatalError,
    FluxError,
    InputValidationError,
    LeaseLostError,
    RunCancelledError,
    RunConflictError,
    RunNotFoundError,
    RunStateError,
    ScheduleConflictError,
    ScheduleError,
    SerializationError,
    SignalTimeoutError,
    StepCrashedError,
    StepTimeoutError,
    StorageError,
    WaitTimeoutError,
    WorkflowDefinitionError,
    WorkflowVersionError,
)
from .logger import FluxConsoleFormatter, FluxConsoleLogger, FluxLogger, FluxSilentLogger
from .result import FluxResult
from .schedules import Schedule
from .signals import Flux, SleepRequest, WaitRequest
from .sinks import CompositeTraceSink, RedactingTraceSink
from .status import RunStatus, StepStatus
from .storage import MemoryStorage, WorkflowStorage, open_storage
from .trace import FluxTraceSink, JsonFileTraceSink, MemoryTraceSink, TraceEvent

if TYPE_CHECKING:
    from .otel import OpenTelemetryTraceSink as OpenTelemetryTraceSink
    from .storage.sqlite import SQLiteStorage as SQLiteStorage

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "ChildWorkflowError",
    "CommitInterruptedError",
    "CompositeTraceSink",
    "DeadlineExceededError",
    "FatalError",
    "Flux",
    "FluxConsoleFormatter",
    "FluxConsoleLogger",
    "FluxEngine",
    "FluxError",
    "FluxLogger",
    "FluxResult",
    "FluxSilentLogger",
    "FluxTraceSink",
    "InputValidationError",
    "JsonFileTraceSink",
    "LeaseLostError",
    "MemoryStorage",
    "MemoryTraceSink",
    "RedactingTraceSink",
    "RunCancelledError",
    "RunConflictError",
    "RunNotFoundError",
    "RunStateError",
    "RunStatus",
    "SQLiteStorage",
    "Schedule",
    "ScheduleConflictError",
    "ScheduleError",
    "SerializationError",
    "SignalTimeoutError",
    "SleepRequest",
    "StepCrashedError",
    "StepDefinition",
    "StepExecution",
    "StepStatus",
    "StepTimeoutError",
    "StorageError",
    "TraceEvent",
    "WaitRequest",
    "WaitTimeoutError",
    "Workflow",
    "WorkflowContext",
    "WorkflowDefinitionError",
    "WorkflowStorage",
    "WorkflowVersionError",
    "__version__",
    "commit",
    "create_workflow",
    "open_storage",
    "step",
]


def __getattr__(name: str) -> object:
    # Imported on first use: SQLite is in the standard library but rarely needed at import;
    # the OpenTelemetry sink needs the `otel` extra, so it stays out of `__all__`.
    if name == "SQLiteStorage":
        from .storage.sqlite import SQLiteStorage as SQLiteStorage

        return SQLiteStorage
    if name == "OpenTelemetryTraceSink":
        from .otel import OpenTelemetryTraceSink as OpenTelemetryTraceSink

        return OpenTelemetryTraceSink
    raise AttributeError(f"module 'flux' has no attribute {name!r}")
