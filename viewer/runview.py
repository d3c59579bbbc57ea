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
    #: Which execution of the run it belongs to: 1, then one more per ``workflow:resume``.
    execution: int = 1
    #: The handler's frames when it failed, innermost last (SPEC §6).
    stack: list[Frame] | None = None


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
    #: A wait whose timeout passed (``signal:timeout``), and what the timeout did.
    timed_out: bool = False
    timeout_error: str | None = None
    timeout_error_type: str | None = None


@dataclass(frozen=True)
class Frame:
    file: str
    line: str
    function: str


@dataclass(frozen=True)
class Mark:
    """Something that happened to the whole run at one moment, marked on the axis:
    ``kind`` is ``resume``, ``signal``, ``timeout``, ``wake`` or ``cancel``."""

    kind: str
    at: float | None
    label: str
    title: str


@dataclass(eq=False)
class Execution:
    """One go of the run: its start, then one per ``workflow:resume`` (``reason``:
    resume, retry_step, recover; ``from_step`` where it went on)."""

    number: int
    start: float | None
    reason: str = "start"
    from_step: str | None = None
    end: float | None = None


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
    stack: list[Frame] | None = None
    #: Set on compensation rows: the step whose effect was undone.
    compensation: bool = False
    #: Completed or skipped at some point (a later compensation does not undo it).
    finished: bool = False
    #: ``step``, or what a branch step is (SPEC §11): ``parallel`` or ``map`` (a group of
    #: branches or items), ``call`` (a child run).
    kind: str = "step"
    #: A branch's or an item's group (the parallel or map name), and an item's index.
    group: str | None = None
    item: int | None = None
    #: A call's child run (``childId``).
    child_id: str | None = None


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
    stack: list[Frame] | None = None
    #: The step named by the run's ``workflow:error``.
    error_step: str | None = None
    #: ``ctx.data`` as of the last step that recorded it (what replay shows mid-run).
    has_latest_data: bool = False
    latest_data: Any = None
    #: ``meta.schedule`` of a run a schedule started, and ``meta.deadline`` (epoch ms).
    schedule_id: str | None = None
    schedule_slot: str | None = None
    deadline: float | None = None
    cancel_reason: str | None = None
    #: A child run's parent (``parentId``) and the parent's call step (``parentStep``).
    parent_id: str | None = None
    parent_step: str | None = None
    #: Each map's items, by map name: drawn as one row, opened in the map's detail.
    maps: dict[str, MapItems] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
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
        return sum(1 for row in self.steps if row.finished and row.group is None)

    @property
    def execution(self) -> int:
        return len(self.executions) or 1

    def step_counts(self) -> list[tuple[str, int]]:
        """How many steps are in each state, as the header words them, in a fixed order:
        a rolled-back run's steps do not read as progress."""
        words = {
            "completed": "completed",
            "skipped": "skipped",
            "running": "running",
            "retrying": "retrying",
            "suspended": "waiting",
            "failed": "failed",
            "cancelled": "cancelled",
            "compensating": "undoing",
            "compensated": "undone",
            "compensation_failed": "failed to undo",
            "pending": "not run",
        }
        counts: dict[str, int] = {}
        for row in self.steps:
            if row.group is not None:  # a branch is counted in its group's step
                continue
            word = words.get(row.status, row.status)
            counts[word] = counts.get(word, 0) + 1
        order = list(words.values())
        return sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)

    def step(self, name: str) -> StepRow | None:
        for row in self.steps:
            if row.name == name:
                return row
        for items in self.maps.values():
            if (item := items.by_name.get(name)) is not None:
                return item
        return None


#: Item states, as a map's row counts them (a retrying or waiting item is running).
ITEM_STATES = {
    "completed": "done",
    "skipped": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "compensated": "undone",
    "compensation_failed": "failed to undo",
    "running": "running",
    "retrying": "running",
    "suspended": "running",
}
#: Items listed at once in a map's detail; the rest are paged.
ITEMS_PAGE = 50
#: The order the counts are shown in, and the states one may filter the items by.
ITEM_WORDS = ("done", "failed", "running", "cancelled", "undone", "failed to undo", "not run")


@dataclass(eq=False)
class MapItems:
    """A map's items (SPEC §11): one row each, kept out of the timeline's rows."""

    name: str
    by_index: dict[int, StepRow] = field(default_factory=dict)
    by_name: dict[str, StepRow] = field(default_factory=dict)
    #: The items' compensations, and the one row in the timeline's undo section that
    #: stands for them all (its one bar spans them).
    undo: dict[str, StepRow] = field(default_factory=dict)
    undo_row: StepRow | None = None

    def add(self, row: StepRow) -> None:
        self.by_name[row.name] = row
        if row.item is not None:
            self.by_index[row.item] = row

    def rows(self, state: str = "") -> list[StepRow]:
        """In item order (items without an index last), only those in ``state`` if given."""
        rows = sorted(self.by_name.values(), key=lambda r: (r.item is None, r.item or 0, r.name))
        if state:
            rows = [r for r in rows if item_state(r) == state]
        return rows

    def page(self, state: str = "", start: int = 0) -> tuple[list[StepRow], int, int]:
        """The items shown from ``start`` (clamped to the list), that start, and how many
        items are in ``state`` in all."""
        rows = self.rows(state)
        start = max(0, min(start, (len(rows) - 1) // ITEMS_PAGE * ITEMS_PAGE)) if rows else 0
        return rows[start : start + ITEMS_PAGE], start, len(rows)

    def counts(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for row in self.by_name.values():
            word = item_state(row)
            counts[word] = counts.get(word, 0) + 1
        return [(word, counts[word]) for word in ITEM_WORDS if counts.get(word)]

    def undo_counts(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for row in self.undo.values():
            word = {"compensating": "undoing", "compensated": "undone"}.get(row.status, "failed to undo")
            counts[word] = counts.get(word, 0) + 1
        return [(word, counts[word]) for word in ("undone", "failed to undo", "undoing") if counts.get(word)]

    def __len__(self) -> int:
        return len(self.by_name)

    @property
    def page_size(self) -> int:
        return ITEMS_PAGE


def item_state(row: StepRow) -> str:
    return ITEM_STATES.get(row.status, "not run")
