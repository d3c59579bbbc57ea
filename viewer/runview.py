"""What the run page draws: a run's rows, attempts and waits, as folded by
``viewer.timeline``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .diff import Change
from .summary import TERMINAL_STATUSES


@dataclass(eq=False)
class Attempt:
    number: int
    start: float | None
    end: float | None = None
    #: ``running``, ``ok``, ``retry`` (failed, retried), ``error`` (failed for
    #: good) or ``suspended`` (the handler asked to wait for a signal).
    outcome: str = "running"
    error: str | None = None
    error_type: str | None = None
    duration: float | None = None
    #: Opened by a retry rather than by a ``step:start`` of its own.
    implicit: bool = False


@dataclass(eq=False)
class Wait:
    """A wait for a signal, or a durable sleep (``signal`` None, ``wake_at`` set)."""

    signal: str | None
    start: float | None
    end: float | None = None
    #: When the wait is due to end (epoch ms): a sleep's wake time, a wait's timeout.
    wake_at: float | None = None
    #: A durable sleep (``step:sleep``) rather than a wait for a signal.
    sleep: bool = False


@dataclass(eq=False)
class StepRow:
    name: str
    index: int | None = None
    commit: bool = False
    status: str = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    max_retries: int | None = None
    skipped_at: float | None = None
    wait: Wait | None = None
    has_output: bool = False
    output: Any = None
    changes: list[Change] | None = None
    error: str | None = None
    error_type: str | None = None
    #: Set on compensation rows: the step whose effect was undone.
    compensation: bool = False
    #: Completed or skipped at some point (a later compensation does not undo it).
    finished: bool = False


@dataclass(eq=False)
class RunView:
    id: str
    workflow: str = ""
    status: str = "running"
    version: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    duration: float | None = None
    has_input: bool = False
    input: Any = None
    has_data: bool = False
    data: Any = None
    error: str | None = None
    error_type: str | None = None
    waiting_for: str | None = None
    steps: list[StepRow] = field(default_factory=list)
    compensations: list[StepRow] = field(default_factory=list)
    #: Events folded (the replay position) and events in the run.
    upto: int = 0
    total: int = 0
    last_event: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def steps_done(self) -> int:
        return sum(1 for row in self.steps if row.finished)

    def step(self, name: str) -> StepRow | None:
        for row in self.steps:
            if row.name == name:
                return row
        return None
