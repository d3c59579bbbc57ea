"""The run page's graph tab (SPEC §12): ``/runs/{id}/graph.json``, the workflow's graph
coloured by one run's state (``viewer.graphshape``), which ``static/graph.js`` draws, and
``/runs/{id}/graph``, the partial that holds it.

The run is read from the trace; one the trace does not hold, from the storage
(``app.state.storage``, from ``flux dev --storage``). The definitions are
``app.state.workflows`` (name -> Workflow, from ``--workflows``). Both may be absent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flux.graph import mermaid

from .graphshape import run_graph, stored_graph
from .pages import _common, _render, _store
from .runpage import _render_clean, _RunContext, run_page
from .runroute import run_of
from .templating import run_url
from .timeline import order_events


def _workflows(request: Request) -> Mapping[str, Any]:
    found = getattr(request.app.state, "workflows", None)
    return found if isinstance(found, Mapping) else {}


async def _graph_of(request: Request, run_id: str) -> dict[str, Any] | None:
    store = await _store(request)
    flows = _workflows(request)
    run = await store.find(run_id)
    if run is not None:
        view = _RunContext(request, store, run).view  # folded up to the replay position
        events = order_events(store.events(run))[: view.upto]
        return run_graph(view, events, flows.get(view.workflow))
    storage = getattr(request.app.state, "storage", None)
    load = getattr(storage, "load_run", None)
    if load is None:
        return None
    record = await load(run_id)
    return stored_graph(record, flows.get(record.name)) if record is not None else None


async def run_graph_json(request: Request) -> Response:
    """``GET /runs/{id}/graph.json``: the graph coloured by the run's state (at ``at``, if a
    replay position is given)."""
    run_id, fragment = run_of(request.scope, request.path_params["run_id"])
    if not fragment:  # the page of a child run whose call is named "graph.json"
        return await run_page(request)
    found = await _graph_of(request, run_id)
    if found is None:
        return Response(json.dumps({"error": "no such run"}), status_code=404, media_type="application/json")
    # ASCII JSON: a lone surrogate from the trace is written as \\udXXX, never as bad UTF-8.
    return Response(json.dumps(found), media_type="application/json")


async def run_graph_tab(request: Request) -> Response:
    """``GET /runs/{id}/graph``: the tab's partial for htmx; a plain visit opens the run page
    on the tab."""
    run_id, fragment = run_of(request.scope, request.path_params["run_id"])
    if not fragment:  # the page of a child run whose call is named "graph"
        return await run_page(request)
    if request.headers.get("hx-request") != "true":
        return RedirectResponse(run_url(run_id) + "?tab=graph", status_code=303)
    found = await _graph_of(request, run_id)
    if found is None:
        store = await _store(request)
        return _render(request, "_run_missing.html", {**_common(store), "run_id": run_id})
    context = {
        "graph": found,
        "mermaid": mermaid(found),
        "json_url": run_url(run_id, "/graph.json"),
    }
    return _render_clean(request, "_graph.html", context)
