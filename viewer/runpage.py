"""The run page: one run's header, timeline and step detail, and their fragments."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .axis import Axis
from .lines import number_or_none
from .pages import _common, _render, _store
from .runview import RunView
from .store import TraceStore
from .summary import RunSummary
from .timeline import fold_run, order_events

#: Folded run views kept, for the fragments of one update and a replay's steps.
VIEWS_CACHED = 16


class _RunContext:
    """A run's events folded up to the replay position, and its time axis."""

    def __init__(self, request: Request, store: TraceStore, run: RunSummary) -> None:
        events = order_events(store.events(run))
        params = request.query_params
        total = len(events)
        try:
            upto = int(params.get("upto", total))
        except ValueError:
            upto = total
        if params.get("live", "1") == "1":
            upto = total
        upto = max(0, min(upto, total))
        # A live update fetches the header, the timeline and the step detail:
        # one fold serves all three.
        views: OrderedDict[tuple[int, str, int, int], RunView] = request.app.state.views
        key = (store.epoch, run.id, total, upto)
        self.view: RunView
        if key in views:
            self.view = views[key]
            views.move_to_end(key)
        else:
            self.view = views[key] = fold_run(run.id, events, upto)
            while len(views) > VIEWS_CACHED:
                views.popitem(last=False)
        stamps = [ts for ev in events if (ts := number_or_none(ev.get("timestamp"))) is not None]
        first = min(stamps) if stamps else None
        last = max(stamps) if stamps else None
        if upto < total:
            last_ts = self.view.last_event.get("timestamp") if self.view.last_event else None
            now = number_or_none(last_ts)
            now = first if now is None else now
        elif run.terminal or self.view.terminal:
            now = last
        else:
            now = time.time() * 1000.0
        self.axis = Axis(first, last, now)
        self.step = params.get("step", "")

    def context(self, store: TraceStore) -> dict[str, Any]:
        return {
            **_common(store),
            "run": self.view,
            "axis": self.axis,
            "selected": self.step,
            "row": self.view.step(self.step) if self.step else None,
        }


async def _run_response(request: Request, template: str, fragment: bool) -> Response:
    store = await _store(request)
    run_id = request.path_params["run_id"]
    run = store.run(run_id)
    if run is None:
        context = {**_common(store), "run_id": run_id}
        if fragment:
            return _render(request, "_run_missing.html", context)
        return _render(request, "run_missing.html", context, status=404)
    return _render(request, template, _RunContext(request, store, run).context(store))


async def run_page(request: Request) -> Response:
    return await _run_response(request, "run.html", fragment=False)


async def run_header(request: Request) -> Response:
    return await _run_response(request, "_run_header.html", fragment=True)


async def run_timeline(request: Request) -> Response:
    return await _run_response(request, "_timeline.html", fragment=True)


async def run_step(request: Request) -> Response:
    return await _run_response(request, "_step_detail.html", fragment=True)
