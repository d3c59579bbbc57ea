"""The pages and the fragments htmx swaps into them."""

from __future__ import annotations

import time
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .query import RunOrder, RunsQuery, select
from .store import TraceStore
from .summary import RUN_STATUSES
from .templating import query_string


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    env: Environment = request.app.state.templates
    return HTMLResponse(env.get_template(name).render(context), status_code=status)


async def _store(request: Request) -> TraceStore:
    # Read whatever was appended before answering: a page is never behind the
    # file, whatever the watcher's latency.
    store: TraceStore = request.app.state.store
    await store.sync()
    return store


def _common(store: TraceStore) -> dict[str, Any]:
    index = store.index
    return {
        "trace_path": str(store.path),
        "exists": store.exists,
        "error": store.error,
        "version": store.version,
        "malformed": index.malformed,
        "malformed_count": index.malformed_count,
        "pending_bytes": index.pending,
        "now": time.time() * 1000.0,
    }


def _runs_context(request: Request, store: TraceStore) -> dict[str, Any]:
    query = RunsQuery.from_params(request.query_params)
    order: RunOrder = request.app.state.order
    page = select(order, store.index, query)
    return {
        **_common(store),
        "query": query,
        "page": page,
        "total_runs": len(store.index.runs),
        "workflows": sorted(store.index.workflows),
        "statuses": RUN_STATUSES,
    }


async def runs_page(request: Request) -> Response:
    store = await _store(request)
    return _render(request, "runs.html", _runs_context(request, store))


async def runs_fragment(request: Request) -> Response:
    store = await _store(request)
    context = _runs_context(request, store)
    # How many workflow names the page's filter lists: when new ones have
    # appeared, the fragment carries a fresh filter out of band.
    try:
        context["known"] = int(request.query_params.get("known", ""))
    except ValueError:
        context["known"] = -1
    response = _render(request, "_runs_table.html", context)
    # Keep the address bar in step with filters and page, for reload and sharing.
    qs = query_string(context["query"].params())
    response.headers["HX-Replace-Url"] = "/?" + qs if qs else "/"
    return response


# The run page lives in runpage.py; these are the routes' names.


async def run_page(request: Request) -> Response:
    from . import runpage

    return await runpage.run_page(request)


async def run_header(request: Request) -> Response:
    from . import runpage

    return await runpage.run_header(request)


async def run_timeline(request: Request) -> Response:
    from . import runpage

    return await runpage.run_timeline(request)


async def run_step(request: Request) -> Response:
    from . import runpage

    return await runpage.run_step(request)
