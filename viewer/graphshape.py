"""Where the graph tab's graph comes from, and the colours of its nodes (SPEC §12). Pure.

The graph is the definition's (``flux.graph``) when the dashboard knows the definition and the
run's steps agree with it; else it is rebuilt from what the run left: its trace (the steps of
``workflow:start``'s ``meta``, the branch events' ``group``, with ``item`` for a map's, calls
from ``childId``) or its stored record (its shape and its steps). Each node then gets the
``status`` of its step in the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flux.events import EventType
from flux.graph import StepShape, build, shapes_of
from flux.records import RunRecord

from .runview import RunView
from .templating import run_url

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
        if kind not in _KINDS:
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


def _fits(flow: Any, names: list[str] | None) -> bool:
    return names is None or names == [s.name for s in flow.steps]


def run_graph(view: RunView, events: list[dict[str, Any]], flow: Any | None) -> dict[str, Any]:
    """The graph of a run from its trace, each node with its ``status`` in the run."""
    facts = trace_facts(events)
    if flow is not None and _fits(
        flow, [s["name"] for s in facts.steps] if facts.steps is not None else None
    ):
        data = build(flow.name, flow.version_tag, shapes_of(flow))
        data["source"] = "definition"
    else:
        data = build(view.workflow, view.version or facts.version, shapes_from_trace(view, facts))
        data["source"] = "trace"
    steps = {row.name: row.status for row in view.steps}
    undo = {row.name: row.status for row in view.compensations}  # the latest of each step
    colour(data, steps, undo, facts.items, facts.child_of)
    data["run"] = {"id": view.id, "status": view.status}
    return data


#: What a stored step's status says of its compensation.
_UNDO = {
    "compensating": "compensating",
    "compensated": "compensated",
    "compensation_failed": "compensation_failed",
}


def stored_graph(record: RunRecord, flow: Any | None) -> dict[str, Any]:
    """The graph of a run from its stored record (a run the trace does not hold)."""
    names = [name for name, _ in record.shape]
    steps = {s.name: s.status.value for s in record.steps}
    maps = {name for name, kind in record.shape if kind == "map"}
    items: dict[str, dict[int, str]] = {}
    for s in record.steps:
        group, _, index = s.name.rpartition("[")
        if group in maps and index.endswith("]") and index[:-1].isdigit():
            items.setdefault(group, {})[int(index[:-1])] = s.status.value
    if flow is not None and _fits(flow, names or None):
        data = build(flow.name, flow.version_tag, shapes_of(flow))
        data["source"] = "definition"
    else:
        undone = {name for name, status in steps.items() if status in _UNDO}
        shapes = [
            StepShape(name, kind if kind in _KINDS else "step", handler=name if kind == "map" else None,
                      compensate=name if name in undone else None)
            for name, kind in record.shape
        ]  # fmt: skip
        data = build(record.name, record.version, shapes)
        data["source"] = "storage"
    undo = {name: status for name, status in steps.items() if status in _UNDO}
    calls = {name: f"{record.id}/{name}" for name, kind in record.shape if kind == "call"
             and steps.get(name, "pending") != "pending"}  # fmt: skip
    colour(data, steps, undo, items, calls)
    data["run"] = {"id": record.id, "status": record.status.value}
    return data


_KINDS = frozenset({"step", "commit", "parallel", "map", "call"})


def colour(
    data: dict[str, Any],
    steps: Mapping[str, str],
    undo: Mapping[str, str],
    items: Mapping[str, Mapping[int, str]],
    child_of: Mapping[str, str],
) -> None:
    """Give each node of ``data`` the status of its step (a map's handler its map's, with its
    items counted by status; a compensation its undo's), and a call its child run."""
    for node in data["nodes"]:
        kind = node["kind"]
        if kind == "compensation":
            node["status"] = undo.get(node["of"], "pending")
            continue
        name = node["group"] if kind == "each" else node["name"]
        node["status"] = steps.get(name, "pending")
        if kind == "each":
            counts: dict[str, int] = {}
            for status in items.get(name, {}).values():
                counts[status] = counts.get(status, 0) + 1
            node["items"] = counts
        child = child_of.get(node["name"]) if kind == "call" else None
        if child is not None:
            node["child_run"] = child
            node["child_url"] = run_url(child)
