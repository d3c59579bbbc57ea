"""What the runs page knows about one run: a compact summary, folded by
``viewer.trace`` from the run's events, and the run statuses."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from flux.status import RUN_TERMINAL, RunStatus

#: Every run status the engine writes (``flux.RunStatus``), in the order the filter lists them.
RUN_STATUSES = tuple(status.value for status in RunStatus)
TERMINAL_STATUSES = frozenset(status.value for status in RUN_TERMINAL)
#: How a run ends when it does not complete (``cancelled`` included: SPEC §9).
ERROR_STATUSES = TERMINAL_STATUSES - {RunStatus.COMPLETED.value}


class RunSummary:
    """What the runs page shows about one run, folded from its events."""

    __slots__ = (
        "data_at",
        "done",
        "duration",
        "ended_at",
        "error",
        "error_type",
        "first_line",
        "id",
        "input_at",
        "last_seq",
        "meta_steps",
        "offsets",
        "retries",
        "seen",
        "started_at",
        "status",
        "waiting_for",
        "wake_at",
        "workflow",
    )

    def __init__(self, run_id: str, workflow: str, first_line: int) -> None:
        self.id = run_id
        self.workflow = workflow
        self.status = "running"
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.duration: float | None = None
        self.meta_steps = 0
        # Names of steps finished (completed or skipped) and, when the trace
        # carries no ``meta.steps``, of every step seen, to count the total.
        self.done: set[str] = set()
        self.seen: set[str] | None = None
        self.error: str | None = None
        self.error_type: str | None = None
        self.waiting_for: str | None = None
        #: When a suspended run wakes (a sleep's end or a wait's timeout), epoch ms, or None.
        self.wake_at: float | None = None
        self.last_seq = 0
        #: Failed attempts that were tried again (``step:retry`` events).
        self.retries = 0
        #: Which of ``offsets`` hold the run's input and its final data, for
        #: search (``viewer.query``), or -1. Positions, not text: small ints
        #: cost nothing, fifty thousand runs' lines would cost tens of megabytes.
        self.input_at = -1
        self.data_at = -1
        self.first_line = first_line
        self.offsets = array("Q")

    def __reduce__(self) -> tuple[Callable[..., RunSummary], tuple[Any, ...]]:
        # Plain tuples and bytes: a loader process sends tens of thousands of
        # these (viewer.bulk), and pickle's default for slotted objects takes
        # thirty times as long to load.
        seen = None if self.seen is None else tuple(self.seen)
        state: tuple[Any, ...] = (self.status, self.started_at, self.ended_at, self.duration)
        state += (self.meta_steps, tuple(self.done), seen, self.error, self.error_type)
        state += (self.waiting_for, self.last_seq, self.retries, self.input_at, self.data_at, self.wake_at)
        return _restore_run, (self.id, self.workflow, self.first_line, state, self.offsets.tobytes())

    @property
    def events(self) -> int:
        return len(self.offsets)

    @property
    def steps_done(self) -> int:
        return len(self.done)

    @property
    def steps_total(self) -> int:
        return self.meta_steps if self.seen is None else len(self.seen)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def sort_key(self) -> tuple[float, int]:
        return (self.started_at if self.started_at is not None else 0.0, self.first_line)


def _restore_run(
    run_id: str, workflow: str, first_line: int, state: tuple[Any, ...], offsets: bytes
) -> RunSummary:
    run = RunSummary(run_id, workflow, first_line)
    (run.status, run.started_at, run.ended_at, run.duration, run.meta_steps, done, seen) = state[:7]
    (run.error, run.error_type, run.waiting_for, run.last_seq, run.retries) = state[7:12]
    (run.input_at, run.data_at, run.wake_at) = state[12:]
    run.done = set(done)
    run.seen = None if seen is None else set(seen)
    run.offsets.frombytes(offsets)
    return run
