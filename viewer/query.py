"""The runs page's query: filter by workflow and status, search, count, paginate."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .lines import parse_line
from .summary import RUN_STATUSES, RunSummary
from .trace import TraceIndex

#: The lines (bytes, newline excluded) holding a run's input and its final data
#: (None where it has none).
ValueLines = Callable[[RunSummary], tuple[bytes | None, bytes | None]]

PER_PAGE = 100
#: The page sizes the runs page offers; any other asked for is clamped to this range.
PAGE_SIZES = (25, 50, 100, 200, 500)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text or "")
    except ValueError:
        return default


@dataclass(frozen=True)
class RunsQuery:
    workflow: str = ""
    status: str = ""
    q: str = ""
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RunsQuery:
        # Page numbers of thousands of digits are still just "the last page".
        page = max(1, _int(params.get("page", "1")[:12], 1))
        per_page = min(max(_int(params.get("per_page", "")[:6], PER_PAGE), PAGE_SIZES[0]), PAGE_SIZES[-1])
        return cls(
            workflow=params.get("workflow", ""),
            status=params.get("status", ""),
            q=params.get("q", "").strip(),
            page=page,
            per_page=per_page,
        )

    def params(self, **override: object) -> dict[str, object]:
        out: dict[str, object] = {
            "workflow": self.workflow,
            "status": self.status,
            "q": self.q,
            "per_page": self.per_page if self.per_page != PER_PAGE else "",
            "page": self.page if self.page > 1 else "",
        }
        out.update(override)
        return out


@dataclass(frozen=True)
class RunsPage:
    rows: list[RunSummary]
    matched: int
    page: int
    pages: int
    #: Runs per status among those the workflow filter and the search let through
    #: (the status filter aside: the chips show what choosing one would give).
    counts: dict[str, int] = field(default_factory=dict)
    #: Runs the workflow filter and the search let through.
    counted: int = 0


class RunOrder:
    """Runs newest first, sorted again only when a run was added or re-dated."""

    def __init__(self) -> None:
        # The index itself, not its id(): a new index after a reset could
        # reuse a freed one's id.
        self._index: TraceIndex | None = None
        self._version = -1
        self._runs: list[RunSummary] = []
        # The last search: its index, needle and, per run, the event count at
        # which it was checked and whether it matched. A live change then
        # re-checks only the runs that changed.
        self._searched: tuple[TraceIndex | None, str] = (None, "")
        self._matches: dict[str, tuple[int, bool]] = {}

    def search(
        self, index: TraceIndex, needle: str, runs: list[RunSummary], values: ValueLines | None
    ) -> list[RunSummary]:
        last_index, last_needle = self._searched
        known = self._matches
        # Typing narrows a search: a run unchanged since it failed to match
        # "gra" cannot match "grace". So each keystroke re-reads only the runs
        # that matched the last one (and runs that changed).
        narrowing = last_index is index and last_needle in needle
        seen: dict[str, tuple[int, bool]] = known if needle == last_needle and narrowing else {}
        out = []
        for r in runs:
            before = known.get(r.id) if narrowing else None
            if before is not None and before[0] == r.events and (needle == last_needle or not before[1]):
                hit = before[1]
            else:
                hit = matches(r, needle, values)
            seen[r.id] = (r.events, hit)
            if hit:
                out.append(r)
        self._searched, self._matches = (index, needle), seen
        return out

    def get(self, index: TraceIndex) -> list[RunSummary]:
        if index is not self._index or index.order_version != self._version:
            # The dict is in first-seen order, close to start order, which
            # Timsort handles in near-linear time.
            self._runs = sorted(index.runs.values(), key=lambda r: r.sort_key, reverse=True)
            self._index, self._version = index, index.order_version
        return self._runs


def _in_values(line: bytes | None, key: str, needle: str) -> bool:
    # The raw line first (cheap: bytes, lowered as ASCII), then, only when it
    # holds the needle, the value itself: a search for "type" must not match
    # every line's keys.
    if line is None:
        return False
    if needle.isascii():
        if needle.encode() not in line.lower():
            return False
        text = line.decode("utf-8", "replace")
    else:
        text = line.decode("utf-8", "replace")
        if needle not in text.lower():
            return False
    ev = parse_line(text)
    if not isinstance(ev, dict) or key not in ev:
        return False
    try:
        value = json.dumps(ev[key], ensure_ascii=False)
    except (TypeError, ValueError):
        return False
    return needle in value.lower()


def matches(run: RunSummary, needle: str, values: ValueLines | None = None) -> bool:
    """Whether ``needle`` (lower case) is in the run's id, workflow, error, or, read
    through ``values``, its input or final data."""
    for text in (run.id, run.workflow, run.error, run.error_type):
        if text is not None and needle in text.lower():
            return True
    if values is None:
        return False
    input_line, data_line = values(run)
    return _in_values(input_line, "input", needle) or _in_values(data_line, "data", needle)


def select(
    order: RunOrder,
    index: TraceIndex,
    query: RunsQuery,
    per_page: int | None = None,
    values: ValueLines | None = None,
) -> RunsPage:
    size = per_page or query.per_page
    runs = order.get(index)
    if query.workflow:
        runs = [r for r in runs if r.workflow == query.workflow]
    if query.q:
        runs = order.search(index, query.q.lower(), runs, values)
    counts = dict.fromkeys(RUN_STATUSES, 0)
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    counted = len(runs)
    if query.status:
        runs = [r for r in runs if r.status == query.status]
    pages = max(1, -(-len(runs) // size))
    page = min(query.page, pages)
    start = (page - 1) * size
    return RunsPage(runs[start : start + size], len(runs), page, pages, counts, counted)
