"""A bare dashboard on stored runs for the action tests: ``create_app`` with a storage and
workflows, plus a minimal stored-run page (``/stored/<id>``) and runs page (``/stored``)
that include the action templates, as the storage pages of ``flux dev --storage`` do.
Until those pages are on main, this is what the tests (and tests/e2e) click through."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from viewer.server import create_app

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stored</title>
<link rel="stylesheet" href="/static/app.css"><script src="/static/actions.js" defer></script></head>
<body><main>{% block body %}{% endblock %}</main></body></html>"""

RUN = """{% extends page %}{% block body %}
<h1 id="stored-id">{{ run.id }}</h1>
<p>status <b id="stored-status">{{ run.status.value }}</b>
{% if run.waiting_for %}waiting for <b id="stored-waiting">{{ run.waiting_for }}</b>{% endif %}</p>
{% include "_run_actions.html" ignore missing %}
{% endblock %}"""

RUNS = """{% extends page %}{% block body %}
<ul id="stored-runs">{% for run in runs %}<li>{{ run.id }} {{ run.status.value }}</li>{% endfor %}</ul>
{% include "_bulk_actions.html" ignore missing %}
{% endblock %}"""


async def _stored_run(request: Request) -> Response:
    state = request.app.state
    run = await state.storage.load_run(request.path_params["run_id"])
    if run is None:
        return HTMLResponse("no such run", status_code=404)
    env = state.templates
    html = env.from_string(RUN).render(
        page=env.from_string(PAGE),
        run=run,
        csrf=getattr(request.state, "csrf", ""),
        read_only=state.read_only,
        can_act=run.name in state.workflows,
    )
    return HTMLResponse(html)


async def _stored_runs(request: Request) -> Response:
    state = request.app.state
    params = {k: v for k, v in request.query_params.items() if k in ("status", "workflow", "q") and v}
    runs = await state.storage.list_runs(limit=200)
    env = state.templates
    html = env.from_string(RUNS).render(
        page=env.from_string(PAGE),
        runs=runs,
        filter_query=urlencode(params),
        csrf=getattr(request.state, "csrf", ""),
        read_only=state.read_only,
    )
    return HTMLResponse(html)


def bare_app(
    storage: Any, workflows: Mapping[str, Any], trace: Path, *, read_only: bool = False, hosts: Any = None
) -> Starlette:
    app = create_app(
        trace, hosts=hosts, storage=storage, workflows=workflows, read_only=read_only, trace_paths=[trace]
    )
    app.router.routes[:0] = [Route("/stored", _stored_runs), Route("/stored/{run_id:path}", _stored_run)]
    return app


def csrf_of(html: str) -> str:
    """The token the page's first action form carries."""
    match = re.search(r'name="csrf" value="([^"]*)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)
