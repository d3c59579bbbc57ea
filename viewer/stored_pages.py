"""The pages of ``flux dev --storage``: the runs list, a run and the stuck view, from storage.

Routes only: what they show is read by ``viewer.stored``; a run's trace (the first of the
``--trace`` files that holds it) adds its timeline through ``viewer.runpage``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from flux.storage import WorkflowStorage

from . import lanes, runpage, stored, values
from .query import PAGE_SIZES, RunsQuery
from .runpage import _render_clean, _RunContext
from .runroute import run_of
from .store import TraceStore
from .stuck import classify, span
from .summary import RUN_STATUSES
from .templating import query_string


def live_version(request: Request) -> int:
    """One number that moves whenever the storage or any trace changes (for ``/events``)."""
    state = request.app.state
    watch = getattr(state, "watch", None)
    stores: list[TraceStore] = state.stores
    total: int = watch.version if watch is not None else 0
    return total + sum(s.version for s in stores)


def _storage(request: Request) -> WorkflowStorage:
    storage: WorkflowStorage = request.app.state.storage
    return storage


def _common(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {
        "trace_path": state.storage_label,
        "error": None,
        "version": live_version(request),
        "now": time.time() * 1000.0,
        "read_only": state.read_only,
        "csrf": getattr(request.state, "csrf", ""),
        "values": values,
        "lanes": lanes,
    }


def _workflow_names(request: Request, rows: list[stored.StoredRow], query: RunsQuery) -> list[str]:
    """The filter's names: the definitions given (``--workflows``), those on the page, the one
    filtered by. Not every stored name: listing them all would read the whole index."""
    names = set(request.app.state.workflows) | {r.workflow for r in rows}
    if query.workflow:
        names.add(query.workflow)
    return sorted(names)


async def _runs_context(request: Request) -> dict[str, Any]:
    query = RunsQuery.from_params(request.query_params)
    page = await stored.list_page(_storage(request), query)
    return {
        **_common(request),
        "query": query,
        "page": page,
        "page_sizes": PAGE_SIZES,
        "workflows": _workflow_names(request, page.rows, query),
        "statuses": RUN_STATUSES,
        # what the bulk actions act on (viewer/actions.py): the filter, not the page
        "filter_query": query_string(query.params(page="", per_page="")),
    }


async def runs_page(request: Request) -> Response:
    return _render_clean(request, "stored_runs.html", await _runs_context(request))


async def runs_fragment(request: Request) -> Response:
    context = await _runs_context(request)
    try:
        context["known"] = int(request.query_params.get("known", ""))
    except ValueError:
        context["known"] = -1
    response = _render_clean(request, "_stored_runs_table.html", context)
    qs = query_string(context["query"].params())
    response.headers["HX-Replace-Url"] = "/?" + qs if qs else "/"
    return response


def _stuck_after(request: Request) -> float:
    value: float = request.app.state.stuck_after
    return value


async def _trace_part(request: Request, run_id: str) -> dict[str, Any]:
    """The trace's timeline of the run, when a trace holds it; else nothing."""
    store = await runpage.store_for(request, run_id)
    summary = store.run(run_id) if store is not None else None
    if store is None or summary is None:
        return {"traced": False}
    context = _RunContext(request, store, summary).context(store, request)
    context["view"] = context.pop("run")
    return {**context, "traced": True, "trace_file": str(store.path)}


async def _run_response(request: Request, template: str, fragment: bool) -> Response:
    # a child run's id holds a "/": the raw path says which run and which part (viewer.runroute)
    run_id, wants_fragment = run_of(request.scope, request.path_params["run_id"])
    if not wants_fragment:
        template, fragment = "stored_run.html", False
    record = await _storage(request).load_run(run_id)
    if record is None:
        # Not stored: a run only a trace knows is still shown, as flux dev without storage would.
        request.state.stored_tried = True  # the trace's page, not this one again
        if await runpage.store_for(request, run_id) is not None:
            return await runpage.run_response(request, "_run_live.html" if fragment else "run.html", fragment)
        context = {**_common(request), "run_id": run_id, "exists": True}
        if fragment:
            return _render_clean(request, "_run_missing.html", context)
        return _render_clean(request, "run_missing.html", context, status=404)
    holder = request.app.state.holder_check
    why = classify(record, time.time(), stuck_after=_stuck_after(request), holder_dead=holder)
    context = {
        **_common(request),
        **await _trace_part(request, run_id),
        "record": record,
        "stored": stored.StoredRun(record, why),
        "can_act": record.name in request.app.state.workflows,
        "version": live_version(request),
        "trace_path": request.app.state.storage_label,
        "error": None,
    }
    return _render_clean(request, template, context)


async def run_page(request: Request) -> Response:
    return await _run_response(request, "stored_run.html", fragment=False)


async def run_live(request: Request) -> Response:
    return await _run_response(request, "_stored_run_live.html", fragment=True)


async def _stuck_context(request: Request) -> dict[str, Any]:
    found = await stored.stuck_runs(
        _storage(request), time.time(), _stuck_after(request), request.app.state.holder_check
    )
    return {
        **_common(request),
        "stuck": found,
        "stuck_after": span(_stuck_after(request)),
        "workflows": request.app.state.workflows,
    }


async def stuck_page(request: Request) -> Response:
    return _render_clean(request, "stuck.html", await _stuck_context(request))


async def stuck_fragment(request: Request) -> Response:
    return _render_clean(request, "_stuck_table.html", await _stuck_context(request))
