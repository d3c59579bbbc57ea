"""The runs page's query: filter by workflow and status, search by id, paginate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .summary import RunSummary
from .trace import TraceIndex

PER_PAGE = 100


@dataclass(frozen=True)
class RunsQuery:
    workflow: str = ""
    status: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RunsQuery:
        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1
        return cls(
            workflow=params.get("workflow", ""),
            status=params.get("status", ""),
            q=params.get("q", "").strip(),
            page=page,
        )

    def params(self, **override: object) -> dict[str, object]:
        out: dict[str, object] = {
            "workflow": self.workflow,
            "status": self.status,
            "q": self.q,
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


class RunOrder:
    """Runs newest first, sorted again only when a run was added or re-dated."""

    def __init__(self) -> None:
        # The index itself, not its id(): a new index after a reset could
        # reuse a freed one's id.
        self._index: TraceIndex | None = None
        self._version = -1
        self._runs: list[RunSummary] = []

    def get(self, index: TraceIndex) -> list[RunSummary]:
        if index is not self._index or index.order_version != self._version:
            # The dict is in first-seen order, close to start order, which
            # Timsort handles in near-linear time.
            self._runs = sorted(index.runs.values(), key=lambda r: r.sort_key, reverse=True)
            self._index, self._version = index, index.order_version
        return self._runs


def select(order: RunOrder, index: TraceIndex, query: RunsQuery, per_page: int = PER_PAGE) -> RunsPage:
    runs = order.get(index)
    if query.workflow or query.status or query.q:
        needle = query.q.lower()
        runs = [
            r
            for r in runs
            if (not query.workflow or r.workflow == query.workflow)
            and (not query.status or r.status == query.status)
            and (not needle or needle in r.id.lower())
        ]
    pages = max(1, -(-len(runs) // per_page))
    page = min(query.page, pages)
    start = (page - 1) * per_page
    return RunsPage(runs[start : start + per_page], len(runs), page, pages)
