"""The run page's graph tab (SPEC §12): the workflow's graph (``flux.graph``) coloured by one
run's state, as JSON that ``static/graph.js`` draws, and the partial that holds it.

The graph comes from the definition when the dashboard knows it (``app.state.workflows``,
name -> Workflow, from ``flux dev --workflows``) and the run's stored steps agree with it;
else from the run's trace: the steps of ``workflow:start``'s ``meta``, their groups from the
branch events' ``group`` (with ``item`` for a map's), calls from ``childId``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flux.events import EventType
from flux.graph import StepShape, build, mermaid, shapes_of

from .pages import _common, _render, _store
from .runpage import _render_clean, _RunContext, run_page
from .runroute import run_of
from .runview import RunView
from .templating import run_url
from .timeline import order_events

#: What an item's events leave it as, for a map's counts (its last event wins).
_ITEM_STATUS = {
    EventType.STEP_START.value: "running",
    EventType.STEP_RETRY.value: "running",
    EventType.STEP_COMPLETE.value: "completed",
    EventType.STEP_ERROR.value: "failed",
    EventType.STEP_SKIPPED.value: "skipped",
    EventType.STEP_COMPENSATE.value: "compensated",
}
_START = (EventType.WORKFLOW_START.value, EventType.WORKFLOW_RESUME.value)


@dataclass
class TraceFacts:
    """What a run's events say of its definition's shape."""

    steps: list[dict[str, Any]] | None = None
    version: str | None = None
    branch_of: dict[str, str] = field(default_factory=dict)
    maps: set[str] = field(default_factory=set)
    item_of: dict[str, str] = field(default_factory=dict)
    #: A map's items: index -> status.
    items: dict[str, dict[int, str]] = field(default_factory=dict)
    child_of: dict[str, str] = field(default_factory=dict)


def trace_facts(events: list[dict[str, Any]]) -> TraceFacts:
    facts = TraceFacts()
    for ev in events:
        typ = ev.get("type")
        meta = ev.get("meta")
        if typ in _START and isinstance(meta, dict) and isinstance(meta.get("steps"), list):
            facts.steps = [s for s in meta["steps"] if isinstance(s, dict) and isinstance(s.get("name"), str)]
            facts.version = meta["version"] if isinstance(meta.get("version"), str) else None
        name, group = ev.get("stepName"), ev.get("group")
        if not isinstance(name, str):
            continue
        if isinstance(ev.get("childId"), str):
            facts.child_of[name] = ev["childId"]
        if not isinstance(group, str) or name == group:
            continue
        item = ev.get("item")
        if type(item) is int:
            facts.maps.add(group)
            facts.item_of[name] = group
            if isinstance(typ, str) and typ in _ITEM_STATUS:
                facts.items.setdefault(group, {})[item] = _ITEM_STATUS[typ]
        else:
            facts.branch_of[name] = group
    return facts


def shapes_from_trace(view: RunView, facts: TraceFacts) -> list[StepShape]:
    """The definition's shape as far as the trace tells it: steps in definition order (the
    order of appearance when the trace has no ``meta.steps``), each branch after its group."""
    specs: list[dict[str, Any]] = facts.steps if facts.steps is not None else []
    if facts.steps is None:
        specs = [{"name": row.name, "commit": row.commit} for row in view.steps]
    groups = set(facts.branch_of.values()) | facts.maps
    undone = {row.name for row in view.compensations}
    rows = {row.name: row for row in view.steps}
    top: list[StepShape] = []
    members: dict[str, list[StepShape]] = {}
    for spec in specs:
        name = str(spec["name"])
        if name in facts.item_of:
            continue
        row = rows.get(name)
        kind = spec.get("kind")
        if kind not in ("step", "commit", "parallel", "map", "call"):
            if name in facts.maps:
                kind = "map"
            elif name in groups:
                kind = "parallel"
            elif name in facts.child_of:
                kind = "call"
            else:
                kind = "commit" if spec.get("commit") is True or (row is not None and row.commit) else "step"
        raw_group = spec.get("group")
        group = raw_group if isinstance(raw_group, str) else facts.branch_of.get(name)
        shape = StepShape(
            name=name,
            kind=kind,
            group=group,
            when="when" if row is not None and row.status == "skipped" else None,
            compensate=name if name in undone else None,
            handler=name if kind == "map" else None,
        )
        (members.setdefault(group, []) if group is not None else top).append(shape)
    out: list[StepShape] = []
    for shape in top:
        out.append(shape)
        out.extend(members.pop(shape.name, []))
    for orphans in members.values():  # a branch whose group the trace does not name
        out.extend(StepShape(s.name, s.kind, None, s.when, s.compensate, s.child) for s in orphans)
    return out


def _definition_fits(flow: Any, facts: TraceFacts) -> bool:
    if facts.steps is None:
        return True
    return [s["name"] for s in facts.steps] == [s.name for s in flow.steps]


def run_graph(view: RunView, events: list[dict[str, Any]], flow: Any | None) -> dict[str, Any]:
    """The graph of the run's workflow, each node with its ``status`` in this run."""
    facts = trace_facts(events)
    if flow is not None and _definition_fits(flow, facts):
        data = build(flow.name, flow.version_tag, shapes_of(flow))
        data["source"] = "definition"
    else:
        data = build(view.workflow, view.version or facts.version, shapes_from_trace(view, facts))
        data["source"] = "trace"
    rows = {row.name: row for row in view.steps}
    undo = {row.name: row.status for row in view.compensations}  # the latest of each step
    for node in data["nodes"]:
        kind = node["kind"]
        if kind == "compensation":
            node["status"] = undo.get(node["of"], "pending")
            continue
        name = node["group"] if kind == "each" else node["name"]
        row = rows.get(name)
        node["status"] = row.status if row is not None else "pending"
        if kind == "each":
            counts: dict[str, int] = {}
            for status in facts.items.get(name, {}).values():
                counts[status] = counts.get(status, 0) + 1
            node["items"] = counts
        child = facts.child_of.get(node["name"]) if kind == "call" else None
        if child is not None:
            node["child_run"] = child
            node["child_url"] = run_url(child)
    data["run"] = {"id": view.id, "status": view.status}
    return data


def _workflows(request: Request) -> Mapping[str, Any]:
    found = getattr(request.app.state, "workflows", None)
    return found if isinstance(found, Mapping) else {}


async def _graph_of(request: Request, run_id: str) -> tuple[dict[str, Any], _RunContext] | None:
    store = await _store(request)
    run = await store.find(run_id)
    if run is None:
        return None
    ctx = _RunContext(request, store, run)
    events = order_events(store.events(run))[: ctx.view.upto]
    return run_graph(ctx.view, events, _workflows(request).get(ctx.view.workflow)), ctx


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
    return Response(json.dumps(found[0]), media_type="application/json")


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
    data, ctx = found
    context = {
        "run": ctx.view,
        "graph": data,
        "mermaid": mermaid(data),
        "json_url": run_url(run_id, "/graph.json"),
    }
    return _render_clean(request, "_graph.html", context)
