"""What a step handler sees: `WorkflowContext[T]`, and the record of one step's execution."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .status import StepStatus

T = TypeVar("T")


@dataclass(frozen=True)
class StepExecution:
    """One step of a run as it stands: its status, attempts, timings, output and error."""

    name: str
    status: StepStatus
    attempts: int
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    duration: float | None
    output: Any
    error: str | None
    error_type: str | None = None
    commit: bool = False


class WorkflowContext(Generic[T]):
    """The run as seen from inside a step (or a `when`, or a compensation).

    `data` is shared by the steps and persisted after each; a failed attempt's changes to
    it are discarded. `outputs` is read-only. `idempotency_key` stays the same across the
    retries, resumes and `retry_step` of one step: pass it to payment APIs.
    """

    __slots__ = ("_cancel", "_history", "attempt", "data", "id", "input", "name", "outputs", "step_name")

    def __init__(
        self,
        *,
        id: str,
        name: str,
        input: T,
        data: dict[str, Any],
        outputs: Mapping[str, Any],
        step_name: str,
        attempt: int,
        history: Callable[[], list[StepExecution]],
        cancel: threading.Event | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.input = input
        self.data = data
        self.outputs = outputs
        self.step_name = step_name
        self.attempt = attempt
        self._history = history
        self._cancel = cancel

    @property
    def idempotency_key(self) -> str:
        return f"{self.id}:{self.step_name}"

    @property
    def history(self) -> list[StepExecution]:
        return self._history()

    @property
    def cancelled(self) -> bool:
        """True once this attempt was abandoned (timeout): a sync handler should stop."""
        return self._cancel is not None and self._cancel.is_set()

    def __repr__(self) -> str:
        return f"<WorkflowContext {self.name} id={self.id} step={self.step_name} attempt={self.attempt}>"
