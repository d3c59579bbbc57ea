"""`FluxResult`: what `execute`, `get` and friends return."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .context import StepExecution
from .records import StepRecord
from .status import RunStatus


@dataclass(frozen=True)
class FluxResult:
    """A run as it stands: finished, suspended, or (seen from `get`) still running."""

    id: str
    name: str
    status: RunStatus
    input: Any
    data: dict[str, Any]
    outputs: Mapping[str, Any]
    error: str | None = None
    error_type: str | None = None
    #: Seconds from the run's creation to its end (or to now, while it is not finished).
    duration: float = 0.0
    waiting_for: str | None = None
    failed_step: str | None = None
    version: str | None = None
    created_at: dt.datetime | None = field(default=None, repr=False)
    completed_at: dt.datetime | None = field(default=None, repr=False)
    #: When a sleeping step wakes, or a wait for a signal times out (aware UTC); else None.
    wake_at: dt.datetime | None = None
    #: When the run is cancelled if still unfinished (`.deadline(...)`, aware UTC); else None.
    deadline: dt.datetime | None = field(default=None, repr=False)
    #: The run whose `.call` step started this one (its id is "<parent id>/<step>"); else None.
    parent_id: str | None = None
    _steps: list[StepRecord] = field(default_factory=list, repr=False, compare=False)

    @cached_property
    def history(self) -> list[StepExecution]:
        """One `StepExecution` per step of the definition, in order."""
        from .history import build_history

        return build_history(self._steps, dict(self.outputs))

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.COMPLETED
