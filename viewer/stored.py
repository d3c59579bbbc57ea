"""Stored runs as the pages show them: the runs list and one run, read from a storage.

The storage is the truth for a run's status, steps and data; a trace, when one holds the
run, adds the timings and the attempt history (the run page's timeline, ``viewer.runpage``).
Every read here is one indexed query: a page of ``list_runs`` (by status, by workflow, by the
start of the id; newest first, ``LIMIT``/``OFFSET`` on the creation index) or one
``load_run`` by id. Nothing counts or scans the table, so a page over 100,000 runs costs what
a page over 100 does; the list therefore says "older" while there are more, not "of N".
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flux.leases import holder_gone, process_identity, start_time
from flux.records import Lease, RunRecord, StepRecord
from flux.status import RUN_TERMINAL, RunStatus, StepStatus
from flux.storage import WorkflowStorage

from .query import RunsQuery
from .stuck import CANDIDATES, Stuck, classify

#: Runs of each stuck-candidate status the stuck view reads at most (newest first, by the
#: status index): a bound on its cost, shown on the page when reached.
STUCK_SCAN = 2000
_DONE = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def parse_json(text: str | None) -> tuple[bool, Any]:
    """(True, the value) of stored JSON text, or (False, the text) if it is not JSON."""
    if text is None:
        return False, None
    try:
        return True, json.loads(text)
    except ValueError:
        return False, text


class StoredRow:
    """One run of the list: what ``_stored_run_row.html`` shows, times in epoch ms."""

    def __init__(self, run: RunRecord, retries: int = 0) -> None:
        self.record = run
        self.id = run.id
        self.workflow = run.name
        self.status = run.status.value
        self.terminal = run.status in RUN_TERMINAL
        self.started_at = _ms(run.created_at)
        self.ended_at = _ms(run.completed_at) if self.terminal else None
        self.updated_at = _ms(run.updated_at)
        self.duration = (
            self.ended_at - self.started_at
            if self.ended_at is not None and self.started_at is not None
            else None
        )
        self.steps_total = len(run.shape) or len(run.steps)
        self.steps_done = sum(1 for s in run.steps if s.status in _DONE)
        self.error = run.error
        self.error_type = run.error_type
        self.error_step = run.error_step
        self.waiting_for = run.waiting_for
        self.wake_at = _ms(run.wake_at)
        #: Failed attempts tried again: from the steps' attempts, or the trace's count.
        self.retries = max(retries, sum(max(0, s.attempts - 1) for s in run.steps))
        #: Changes whenever the stored run does: the page replaces only the rows that changed.
        self.version_key = f"{run.rev}.{run.updated_at!r}.{run.status.value}"


@dataclass(frozen=True)
class StoredPage:
    rows: list[StoredRow]
    page: int
    #: Whether a next (older) page has any run.
    more: bool


def statuses(query: RunsQuery) -> list[RunStatus] | None:
    """The query's status filter as statuses; an unknown one matches nothing (``[]``)."""
    if not query.status:
        return None
    try:
        return [RunStatus(query.status)]
    except ValueError:
        return []


async def list_page(storage: WorkflowStorage, query: RunsQuery) -> StoredPage:
    """One page of the runs list, from one indexed query (one more row tells "more")."""
    wanted = statuses(query)
    if wanted == []:
        return StoredPage([], query.page, False)
    runs = await storage.list_runs(
        name=query.workflow or None,
        status=wanted,
        id_prefix=query.q or None,
        limit=query.per_page + 1,
        offset=(query.page - 1) * query.per_page,
    )
    return StoredPage([StoredRow(r) for r in runs[: query.per_page]], query.page, len(runs) > query.per_page)


@dataclass(frozen=True)
class StepView:
    index: int
    step: StepRecord
    has_output: bool
    output: Any

    @property
    def status(self) -> str:
        return self.step.status.value

    @property
    def started_at(self) -> float | None:
        return _ms(self.step.started_at)

    @property
    def completed_at(self) -> float | None:
        return _ms(self.step.completed_at)


class StoredRun:
    """One stored run for its page: the record, its values parsed, its steps."""

    def __init__(self, run: RunRecord, stuck: Stuck | None) -> None:
        self.record = run
        self.row = StoredRow(run)
        self.stuck = stuck
        self.has_input, self.input = parse_json(run.input_json)
        self.has_data, self.data = parse_json(run.data_json)
        self.steps = [StepView(i, s, *parse_json(s.output_json)) for i, s in enumerate(run.steps)]
        self.deadline = _ms(run.deadline)
        self.lease_expires = _ms(run.lease.expires_at) if run.lease else None


class HolderCheck:
    """Whether a lease's holder is a process of this machine that is gone (``flux.leases``):
    the dashboard's own view, from its own identity, as an engine's would be."""

    def __init__(self) -> None:
        self.host = socket.gethostname()
        self.identity = process_identity()

    def __call__(self, lease: Lease) -> bool:
        if lease.host != self.host or not lease.identity or not self.identity:
            return False
        return holder_gone(lease.identity, self.identity, start_time)


@dataclass(frozen=True)
class StuckRun:
    row: StoredRow
    stuck: Stuck


@dataclass(frozen=True)
class StuckList:
    runs: list[StuckRun]
    #: Statuses whose candidates were more than ``STUCK_SCAN``: the list may be partial.
    truncated: Sequence[str]


async def stuck_runs(
    storage: WorkflowStorage, now: float, stuck_after: float, holder_dead: HolderCheck
) -> StuckList:
    """The stuck runs among the newest ``STUCK_SCAN`` of each unfinished status."""
    found: list[StuckRun] = []
    truncated = []
    for status in CANDIDATES:
        runs = await storage.list_runs(status=[status], limit=STUCK_SCAN + 1)
        if len(runs) > STUCK_SCAN:
            truncated.append(status.value)
        for run in runs[:STUCK_SCAN]:
            why = classify(run, now, stuck_after=stuck_after, holder_dead=holder_dead)
            if why is not None:
                found.append(StuckRun(StoredRow(run), why))
    found.sort(key=lambda s: s.row.started_at or 0.0, reverse=True)
    return StuckList(found, truncated)
