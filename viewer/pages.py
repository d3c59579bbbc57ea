"""The pages and the fragments htmx swaps into them."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from jinja2 import Environment
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .headline import Headline, headline
from .query import PAGE_SIZES, RunOrder, RunsQuery, select
from .store import TraceStore
from .summary import RUN_STATUSES, RunSummary
from .templating import query_string
from .timeline import fold_run, order_events

#: Failed runs' headlines kept for the runs list, each valid while its run is unchanged.
HEADLINES_CACHED = 2000
#: Rendered rows of the runs list kept, each valid while its run is unchanged:
#: a live change then renders one row, not a page of them.
ROWS_CACHED = 2000


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
        "loading": store.loading,
        "now": time.time() * 1000.0,
    }


def _headlines(request: Request, store: TraceStore, rows: list[RunSummary]) -> dict[str, Headline]:
    """The headline of every failed run in ``rows``, folded once per change of the run."""
    cache: OrderedDict[str, tuple[int, int, Headline | None]] = request.app.state.headlines
    out: dict[str, Headline] = {}
    for run in rows:
        if not run.terminal or run.status == "completed":
            continue
        key = (store.epoch, run.events)
        cached = cache.get(run.id)
        if cached is not None and cached[:2] == key:
            head = cached[2]
            cache.move_to_end(run.id)
        else:
            head = headline(fold_run(run.id, order_events(store.events(run))))
            cache[run.id] = (*key, head)
            while len(cache) > HEADLINES_CACHED:
                cache.popitem(last=False)
        if head is not None:
            out[run.id] = head
    return out


def _rows(
    request: Request, store: TraceStore, rows: list[RunSummary], heads: dict[str, Headline]
) -> list[Markup]:
    """Each row of the list as HTML, rendered once per change of its run.

    ``Markup`` only wraps the output of the autoescaped ``_run_row.html``: what the
    trace holds is escaped there. A row holds no clock: a running run's duration
    is written from ``data-since`` by the page (static/runs.js). Its ``data-v``
    names the version, so that the page replaces only the rows that changed.
    """
    env: Environment = request.app.state.templates
    template = env.get_template("_run_row.html")
    cache: OrderedDict[str, tuple[int, int, str, Markup]] = request.app.state.rows
    now = time.time() * 1000.0
    out = []
    for run in rows:
        cached = cache.get(run.id)
        if (
            cached is not None
            and cached[0] == store.epoch
            and cached[1] == run.events
            and cached[2] == run.status
        ):
            cache.move_to_end(run.id)
            out.append(cached[3])
            continue
        key = f"{store.epoch}.{run.events}.{run.status}"
        html = Markup(template.render(run=run, head=heads.get(run.id), now=now, version_key=key))
        cache[run.id] = (store.epoch, run.events, run.status, html)
        while len(cache) > ROWS_CACHED:
            cache.popitem(last=False)
        out.append(html)
    return out


def _runs_context(request: Request, store: TraceStore) -> dict[str, Any]:
    query = RunsQuery.from_params(request.query_params)
    order: RunOrder = request.app.state.order
    with store.value_lines() as values:
        page = select(order, store.index, query, values=values)
    return {
        **_common(store),
        "query": query,
        "page": page,
        "page_sizes": PAGE_SIZES,
        "rows": _rows(request, store, page.rows, _headlines(request, store, page.rows)),
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


async def run_live(request: Request) -> Response:
    from . import runpage

    return await runpage.run_live(request)
