"""A workflow's graph (SPEC §11): as data (`format="json"`, what `flux dev` draws) and as
Mermaid `flowchart TD` text, both from one description of the steps (`StepShape`).

Pure: a definition in, a dict or a text out. `flux dev` builds the shapes from a run's trace
when it does not know the definition, and gets the same graph from `build`.

Node ids are generated (`s0`, `s1`, ... by step index; `s4_each` for a map's handler,
`s2_undo` for a compensation): a step name never becomes syntax. In Mermaid every label is
quoted and every character that is not a letter, a digit or harmless punctuation is written
as Mermaid's numeric entity (`#34;` for `"`), so that quotes, brackets, `-->`, `#`, `<` and
control characters in a name stay text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

from .errors import WorkflowDefinitionError

if TYPE_CHECKING:
    from .builder import Workflow

__all__ = ["FORMATS", "StepShape", "build", "graph", "mermaid", "shapes_of"]

FORMATS = ("mermaid", "json")
GraphFormat = Literal["mermaid", "json"]


@dataclass(frozen=True)
class StepShape:
    """What the graph needs of one step: its kind and the names of its functions."""

    name: str
    #: step, commit, parallel, map or call
    kind: str
    #: The parallel group this step is a branch of.
    group: str | None = None
    #: The name of its `when` condition, of its compensation, of the workflow it calls.
    when: str | None = None
    compensate: str | None = None
    child: str | None = None
    #: A map's handler and how many items run at once.
    handler: str | None = None
    max_concurrency: int | None = None


def fn_name(fn: Callable[..., Any], default: str) -> str:
    """A function's `__name__`; `default` for a lambda."""
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str):
        name = type(fn).__name__
    return default if name == "<lambda>" else name


def shapes_of(flow: Workflow[Any]) -> list[StepShape]:
    shapes = []
    for s in flow.steps:
        shapes.append(
            StepShape(
                name=s.name,
                kind=s.kind,
                group=s.group,
                when=fn_name(s.when, "when") if s.when is not None else None,
                compensate=fn_name(s.compensate, s.name) if s.compensate is not None else None,
                child=s.child.name if s.child is not None else None,
                handler=fn_name(s.handler, s.name) if s.kind == "map" else None,
                max_concurrency=s.max_concurrency if s.kind == "map" else None,
            )
        )
    return shapes


@overload
def graph(flow: Workflow[Any], format: Literal["mermaid"] = "mermaid") -> str: ...
@overload
def graph(flow: Workflow[Any], format: Literal["json"]) -> dict[str, Any]: ...
@overload
def graph(flow: Workflow[Any], format: str) -> str | dict[str, Any]: ...
def graph(flow: Workflow[Any], format: str = "mermaid") -> str | dict[str, Any]:
    """The workflow's graph: Mermaid text, or (`format="json"`) the same graph as data."""
    if format not in FORMATS:
        raise WorkflowDefinitionError(
            f"workflow '{flow.name}': graph(format={format!r}): unknown format; "
            f"expected one of {', '.join(map(repr, FORMATS))}"
        )
    data = build(flow.name, flow.version_tag, shapes_of(flow))
    return data if format == "json" else mermaid(data)


def build(workflow: str, version: str | None, shapes: Sequence[StepShape]) -> dict[str, Any]:
    """The graph as data: `nodes` (one per step, plus a map's handler and each compensation),
    `edges` (`next`, `when` into a step with a condition, `compensate` to its undo) and
    `groups` (parallel groups and maps, with their member node ids)."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    # Each top-level element's entry and exit nodes, in order: a step is its own; a
    # parallel group's are its branches; a map's is its handler's node.
    elements: list[list[str]] = []
    by_group: dict[str, list[str]] = {}

    def node(id_: str, shape: StepShape, kind: str, group: str | None, label: list[str]) -> dict[str, Any]:
        entry = {
            "id": id_, "name": shape.name, "kind": kind, "group": group, "commit": kind == "commit",
            "compensate": None, "when": None, "child": None, "label": label,
        }  # fmt: skip
        nodes.append(entry)
        return entry

    for i, shape in enumerate(shapes):
        sid = f"s{i}"
        if shape.kind in ("parallel", "map"):
            title = f"{shape.name} · {shape.kind}"
            node(sid, shape, shape.kind, None, [title])["compensate"] = shape.compensate
            groups[shape.name] = {"id": sid, "name": shape.name, "kind": shape.kind, "members": []}
            by_group[shape.name] = []
            elements.append(by_group[shape.name])
            if shape.kind == "map":
                each = node(f"{sid}_each", shape, "each", shape.name, [
                    shape.handler or shape.name,
                    f"× items, max {shape.max_concurrency or 1} at once",
                ])  # fmt: skip
                each["name"] = shape.handler or shape.name
                each["max_concurrency"] = shape.max_concurrency
                groups[shape.name]["members"].append(each["id"])
                by_group[shape.name].append(each["id"])
                _undo(nodes, edges, groups[shape.name], each["id"], f"{sid}_undo", shape)
            continue
        group = groups.get(shape.group) if shape.group is not None else None
        label = [shape.name]
        if shape.kind == "call":
            label.append(f"calls {shape.child}" if shape.child is not None else "calls a child workflow")
        entry = node(sid, shape, shape.kind, shape.group if group else None, label)
        entry.update(when=shape.when, compensate=shape.compensate, child=shape.child)
        if group is not None:
            group["members"].append(sid)
            by_group[group["name"]].append(sid)
        else:
            elements.append([sid])
        _undo(nodes, edges, group, sid, f"{sid}_undo", shape)

    by_id = {n["id"]: n for n in nodes}
    undo_edges, edges = edges, []
    for before, after in itertools.pairwise([e for e in elements if e]):  # an empty group is passed by
        for a in before:
            for b in after:
                when = by_id[b]["when"]
                kind = "when" if when is not None else "next"
                edges.append({"from": a, "to": b, "kind": kind, "label": when})
    edges.extend(undo_edges)
    carried = {e["to"] for e in edges if e["kind"] == "when"}
    for n in nodes:
        if n["when"] is not None and n["id"] not in carried:  # nothing leads in: say it on the node
            n["label"] = [f"if {n['when']}", *n["label"]]
    return {"workflow": workflow, "version": version, "nodes": nodes, "edges": edges,
            "groups": list(groups.values())}  # fmt: skip


def _undo(
    nodes: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    group: dict[str, Any] | None,
    of: str,
    undo: str,
    shape: StepShape,
) -> None:
    if shape.compensate is None:
        return
    nodes.append({
        "id": undo, "name": shape.compensate, "kind": "compensation",
        "group": group["name"] if group else None, "commit": False, "compensate": None,
        "when": None, "child": None, "label": [f"undo {shape.compensate}"], "of": shape.name,
    })  # fmt: skip
    edges.append({"from": of, "to": undo, "kind": "compensate", "label": "undo"})
    if group is not None:
        group["members"].append(undo)


#: Mermaid shapes by node kind: opening and closing brackets around the quoted label.
_SHAPES = {
    "step": ('["', '"]'),
    "commit": ('{{"', '"}}'),
    "call": ('[["', '"]]'),
    "each": ('("', '")'),
    "compensation": ('(["', '"])'),
}
#: Not `%` (`%%{init: ...}%%` anywhere in the text is a Mermaid directive), nor `#` (entities).
_CLASSES = {"commit": "commitStep", "call": "callStep", "compensation": "undoStep"}
_CLASS_STYLES = {
    "commit": "fill:#fef3c7,stroke:#b45309",
    "call": "fill:#e0e7ff,stroke:#4338ca",
    "compensation": "fill:#fee2e2,stroke:#b91c1c,stroke-dasharray: 2 3",
}
_PUNCTUATION = frozenset(" _-.,:;!?/+=*'@$^~×·")


def escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label: letters, digits and harmless punctuation
    as they are, every other character as its numeric entity (`#34;`)."""
    return "".join(
        c if (c.isalnum() and c.isprintable()) or c in _PUNCTUATION else f"#{ord(c)};" for c in text
    )


def _label(lines: Sequence[str]) -> str:
    return "<br>".join(escape(line) for line in lines)


def mermaid(data: dict[str, Any]) -> str:
    """Mermaid `flowchart TD` text of a graph from `build`."""
    out = ["flowchart TD"]
    members: dict[str, list[dict[str, Any]]] = {}
    for n in data["nodes"]:
        if n["group"] is not None:
            members.setdefault(n["group"], []).append(n)

    def shape(n: dict[str, Any], indent: str) -> str:
        opening, closing = _SHAPES.get(n["kind"], _SHAPES["step"])
        return f"{indent}{n['id']}{opening}{_label(n['label'])}{closing}"

    for n in data["nodes"]:
        if n["kind"] in ("parallel", "map"):
            out.append(f'  subgraph {n["id"]}["{_label(n["label"])}"]')
            out.extend(shape(m, "    ") for m in members.get(n["name"], []))
            out.append("  end")
        elif n["group"] is None:
            out.append(shape(n, "  "))
    styles = []
    for i, e in enumerate(data["edges"]):
        if e["kind"] == "next":
            out.append(f"  {e['from']} --> {e['to']}")
        else:
            out.append(f'  {e["from"]} -.->|"{escape(e["label"] or "")}"| {e["to"]}')
            styles.append(f"  linkStyle {i} stroke-dasharray: {'6 4' if e['kind'] == 'when' else '2 3'}")
    out.extend(styles)
    # Class names of our own: `call` is a Mermaid keyword (click callbacks).
    classes: dict[str, list[str]] = {"commit": [], "call": [], "compensation": []}
    for n in data["nodes"]:
        if n["kind"] in classes:
            classes[n["kind"]].append(n["id"])
    out.extend(f"  classDef {_CLASSES[kind]} {style}" for kind, style in _CLASS_STYLES.items())
    out.extend(f"  class {','.join(ids)} {_CLASSES[kind]}" for kind, ids in classes.items() if ids)
    return "\n".join(out) + "\n"
