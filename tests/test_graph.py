"""`flow.graph()`: Mermaid text for each construct, hostile names, the JSON shape, bad formats."""

from __future__ import annotations

import re
from typing import Any

import pytest

from flux import WorkflowDefinitionError, create_workflow
from flux.builder import commit, step
from flux.graph import escape


def validate(ctx: Any) -> None: ...
def reserve_stock(ctx: Any) -> None: ...
def release_stock(ctx: Any) -> None: ...
def fraud_check(ctx: Any) -> None: ...
def make_thumbnail(ctx: Any) -> None: ...
def charge(ctx: Any) -> None: ...
def refund(ctx: Any) -> None: ...
def is_vip(ctx: Any) -> bool:
    return True


invoice_flow = create_workflow("invoice-flow").step("bill", validate)

checkout = (
    create_workflow("checkout")
    .version("v2")
    .step("validate", validate)
    .parallel(
        "reserve",
        step("stock", reserve_stock, compensate=release_stock),
        commit("fraud", fraud_check, when=is_vip),
    )
    .map("thumbnails", make_thumbnail, items=lambda ctx: [], max_concurrency=4)
    .call("invoice", invoice_flow, input=lambda ctx: {})
    .step("vip", validate, when=is_vip)
    .step("gift", validate, when=lambda ctx: True)
    .commit("charge", charge, compensate=refund)
)

#: Every line Mermaid is given is one of these (ids are generated; labels are quoted).
_ID = r"s\d+(?:_each|_undo)?"
_LABEL = r'"[^"\n]*"'
_GRAMMAR = [
    r"flowchart TD",
    rf"(?:  |    ){_ID}(?:\[{_LABEL}\]|\{{\{{{_LABEL}\}}\}}|\[\[{_LABEL}\]\]|\({_LABEL}\)|\(\[{_LABEL}\]\))",
    rf"  subgraph {_ID}\[{_LABEL}\]",
    r"  end",
    rf"  {_ID} --> {_ID}",
    rf"  {_ID} -\.->\|{_LABEL}\| {_ID}",
    r"  linkStyle \d+ stroke-dasharray: [\d ]+",
    r"  classDef \w+ [\w:#,\- ]+",
    rf"  class {_ID}(?:,{_ID})* \w+",
]


def _lines(text: str) -> list[str]:
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    for line in lines:
        assert any(re.fullmatch(g, line) for g in _GRAMMAR), f"not Mermaid we write: {line!r}"
    return lines


def _unescape(label: str) -> str:
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label)


def test_mermaid_draws_each_construct() -> None:
    lines = _lines(checkout.graph())
    assert lines[0] == "flowchart TD"
    assert '  s0["validate"]' in lines
    # a parallel group is a subgraph holding its branches; a commit branch is a hexagon
    start = lines.index('  subgraph s1["reserve · parallel"]')
    assert lines[start + 1 : start + 5] == [
        '    s2["stock"]',
        '    s2_undo(["undo release_stock"])',
        '    s3{{"fraud"}}',
        "  end",
    ]
    # a map is a subgraph with one node for its handler
    start = lines.index('  subgraph s4["thumbnails · map"]')
    assert lines[start + 1] == '    s4_each("make_thumbnail<br>× items, max 4 at once")'
    # a call is a subroutine naming the child workflow; a commit a hexagon: not the same shape
    assert '  s5[["invoice<br>calls invoice-flow"]]' in lines
    assert '  s8{{"charge"}}' in lines
    # edges: into a branch's entries, out of its exits; `when` dashed and labelled
    assert "  s0 --> s2" in lines
    assert '  s0 -.->|"is_vip"| s3' in lines
    assert "  s2 --> s4_each" in lines and "  s3 --> s4_each" in lines
    assert "  s4_each --> s5" in lines
    assert '  s5 -.->|"is_vip"| s6' in lines
    assert '  s6 -.->|"when"| s7' in lines  # a lambda's condition is called "when"
    # compensations: a dotted edge to an undo node
    assert '  s8 -.->|"undo"| s8_undo' in lines
    assert '  s8_undo(["undo refund"])' in lines
    assert "  class s3,s8 commitStep" in lines and "  class s5 callStep" in lines
    assert "  class s2_undo,s8_undo undoStep" in lines


def test_mermaid_styles_when_and_undo_edges_apart() -> None:
    lines = _lines(checkout.graph())
    edges = [line for line in lines if "-->" in line or "-.->" in line]
    found = [re.fullmatch(r"  linkStyle (\d+) (.*)", line) for line in lines]
    styles = {m.group(1): m.group(2) for m in found if m}
    for i, edge in enumerate(edges):
        if '"undo"' in edge:
            assert styles[str(i)] == "stroke-dasharray: 2 3"
        elif "-.->" in edge:
            assert styles[str(i)] == "stroke-dasharray: 6 4"
        else:
            assert str(i) not in styles


def test_a_first_step_with_a_condition_says_so_on_its_node() -> None:
    flow = create_workflow("w").step("a", validate, when=is_vip).step("b", validate)
    lines = _lines(flow.graph())
    assert '  s0["if is_vip<br>a"]' in lines
    assert "  s0 --> s1" in lines


HOSTILE = [
    'say "hi"',
    'a]; s1["evil',
    "x --> y",
    "line\nbreak\r\n",
    "#quot; #35; &amp; <b>bold</b> <script>alert(1)</script>",
    "end",
    "subgraph",
    "`md` | pipe | {braces} (parens)",
    "ünï cödé ✓ 🚀 \u202e \u200b",
    "%%{init: {}}%%",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_text(name: str) -> None:
    flow = (
        create_workflow(f"wf {name}")
        .step(name, validate, when=is_vip, compensate=refund)
        .parallel(f"group {name}", step(f"branch {name}", validate))
        .map(f"map {name}", make_thumbnail, items=lambda ctx: [])
        .call(f"call {name}", create_workflow(f"child {name}").step("x", validate))
        .commit(f"commit {name}", charge)
    )
    text = flow.graph()
    lines = _lines(text)  # the names broke no line out of the grammar
    for line in lines:
        for raw in re.findall(r'"([^"]*)"', line):  # nothing Mermaid or HTML reads, raw
            assert re.fullmatch(r"(?:[^\"<>\[\]{}()|`#\n\r&%]|#\d+;|<br>)*", raw), raw
    labels = {_unescape(part) for m in re.findall(r'"([^"]*)"', text) for part in m.split("<br>")}
    assert name in labels  # and each name reads back as it was
    assert {f"branch {name}", f"commit {name}", f"call {name}", f"calls child {name}"} <= labels
    assert f"group {name} · parallel" in labels and f"map {name} · map" in labels


def test_escape_keeps_letters_and_writes_the_rest_as_entities() -> None:
    assert escape("stock_2 ok") == "stock_2 ok"
    assert escape('a"b') == "a#34;b"
    assert escape("#") == "#35;"
    assert escape("<br>") == "#60;br#62;"
    assert escape("é✓") == "é#10003;"  # a letter stays; a symbol is written as an entity
    assert escape("\n") == "#10;"
    assert escape("%%{init: {}}%%") == "#37;#37;#123;init: #123;#125;#125;#37;#37;"


def test_json_shape() -> None:
    data = checkout.graph("json")
    assert data["workflow"] == "checkout" and data["version"] == "v2"
    keys = {"id", "name", "kind", "group", "commit", "compensate", "when", "child"}
    for node in data["nodes"]:
        assert keys <= node.keys()
    by_name = {n["name"]: n for n in data["nodes"]}
    # one node per step of the definition, in its order, ids by step index
    assert [n["name"] for n in data["nodes"] if not n["id"].endswith(("_each", "_undo"))] == [
        s.name for s in checkout.steps
    ]
    assert by_name["stock"] == {
        "id": "s2", "name": "stock", "kind": "step", "group": "reserve", "commit": False,
        "compensate": "release_stock", "when": None, "child": None, "label": ["stock"],
    }  # fmt: skip
    assert by_name["fraud"]["commit"] is True and by_name["fraud"]["when"] == "is_vip"
    assert by_name["invoice"]["kind"] == "call" and by_name["invoice"]["child"] == "invoice-flow"
    assert by_name["make_thumbnail"]["kind"] == "each" and by_name["make_thumbnail"]["max_concurrency"] == 4
    assert by_name["refund"]["kind"] == "compensation" and by_name["refund"]["of"] == "charge"
    assert data["groups"] == [
        {"id": "s1", "name": "reserve", "kind": "parallel", "members": ["s2", "s2_undo", "s3"]},
        {"id": "s4", "name": "thumbnails", "kind": "map", "members": ["s4_each"]},
    ]
    edges = {(e["from"], e["to"]): (e["kind"], e["label"]) for e in data["edges"]}
    assert edges[("s0", "s3")] == ("when", "is_vip")
    assert edges[("s0", "s2")] == ("next", None)
    assert edges[("s8", "s8_undo")] == ("compensate", "undo")
    assert edges[("s2", "s2_undo")] == ("compensate", "undo")
    assert all(e["kind"] in ("next", "when", "compensate") for e in data["edges"])


def test_json_is_json() -> None:
    import json

    data = checkout.graph("json")
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize("fmt", ["dot", "", "JSON", None, 3])
def test_an_unknown_format_names_the_workflow_and_the_format(fmt: Any) -> None:
    with pytest.raises(WorkflowDefinitionError) as err:
        checkout.graph(fmt)
    assert "workflow 'checkout'" in str(err.value)
    assert repr(fmt) in str(err.value)
    assert "'mermaid'" in str(err.value) and "'json'" in str(err.value)


def test_an_empty_workflow_has_an_empty_graph() -> None:
    flow = create_workflow("empty")
    assert flow.graph().splitlines() == [
        "flowchart TD",
        "  classDef commitStep fill:#fef3c7,stroke:#b45309",
        "  classDef callStep fill:#e0e7ff,stroke:#4338ca",
        "  classDef undoStep fill:#fee2e2,stroke:#b91c1c,stroke-dasharray: 2 3",
    ]
    assert flow.graph("json") == {
        "workflow": "empty",
        "version": None,
        "nodes": [],
        "edges": [],
        "groups": [],
    }


def test_the_readme_example_prints_the_graph_the_readme_shows(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n### The workflow graph\n") :]
    blocks = dict(
        (m[1], m[2]) for m in reversed(list(re.finditer(r"```(\w+)\n(.*?)```", section, re.DOTALL)))
    )
    script = tmp_path / "example.py"
    script.write_text(blocks["python"], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == blocks["mermaid"]
    _lines(done.stdout)


def test_a_group_with_no_branch_yet_does_not_cut_the_line() -> None:
    from flux.graph import StepShape, build

    shapes = [StepShape("a", "step"), StepShape("g", "parallel"), StepShape("b", "step")]
    data = build("w", None, shapes)
    assert [(e["from"], e["to"]) for e in data["edges"]] == [("s0", "s2")]
    assert data["groups"] == [{"id": "s1", "name": "g", "kind": "parallel", "members": []}]
