"""The run page's graph tab: `/runs/{id}/graph` (the htmx partial) and `/runs/{id}/graph.json`
(the graph coloured by the run's state), from the definition or from the trace."""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any

from flux import Backoff, FatalError, FluxEngine, create_workflow
from flux.builder import commit, step
from flux.trace import MemoryTraceSink
from tests.viewer.conftest import Viewer
from tests.viewer.factory import RunWriter

HX = {"HX-Request": "true"}


def keep(ctx: Any) -> int:
    return 1


def release(ctx: Any) -> None: ...


def declined(ctx: Any) -> None:
    raise FatalError("declined")


def is_big(ctx: Any) -> bool:
    return False


saga = (
    create_workflow("saga")
    .step("reserve", keep, compensate=release)
    .step("gift", keep, when=is_big)
    .commit("charge", declined)
    .step("ship", keep)
)


def _engine_trace(flow: Any, run_id: str) -> list[dict[str, Any]]:
    sink = MemoryTraceSink()
    engine = FluxEngine(trace=sink, default_backoff=Backoff(initial=0, jitter=0))
    engine.execute_sync(flow, {}, id=run_id)
    return list(sink.events)


def _graph(viewer: Viewer, run_id: str, query: str = "") -> dict[str, Any]:
    response = viewer.client.get(f"/runs/{run_id}/graph.json{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    data: dict[str, Any] = response.json()
    return data


def _status(data: dict[str, Any]) -> dict[str, str]:
    return {n["name"]: n["status"] for n in data["nodes"]}


def test_a_run_from_the_trace_alone_is_a_line_coloured_by_its_steps(viewer: Viewer) -> None:
    viewer.write(_engine_trace(saga, "S-1"))
    data = _graph(viewer, "S-1")
    assert data["source"] == "trace" and data["workflow"] == "saga"
    assert data["run"] == {"id": "S-1", "status": "rolled_back"}
    assert [n["name"] for n in data["nodes"]] == ["reserve", "reserve", "gift", "charge", "ship"]
    assert _status(data) == {
        "reserve": "compensated",
        "gift": "skipped",
        "charge": "failed",
        "ship": "pending",
    }
    by_id = {n["id"]: n for n in data["nodes"]}
    assert by_id["s2"]["commit"] is True and by_id["s2"]["kind"] == "commit"  # from meta.steps
    # what the run met: a compensation that ran, a condition that skipped
    assert by_id["s0_undo"]["kind"] == "compensation" and by_id["s0_undo"]["status"] == "compensated"
    assert by_id["s1"]["when"] == "when"
    assert [(e["from"], e["to"], e["kind"]) for e in data["edges"]] == [
        ("s0", "s1", "when"), ("s1", "s2", "next"), ("s2", "s3", "next"), ("s0", "s0_undo", "compensate"),
    ]  # fmt: skip


def test_the_definition_is_drawn_when_the_dashboard_knows_it(viewer: Viewer) -> None:
    viewer.write(_engine_trace(saga, "S-1"))
    viewer.client.app.state.workflows = {"saga": saga}  # type: ignore[attr-defined]
    data = _graph(viewer, "S-1")
    assert data["source"] == "definition"
    assert data["nodes"] == [
        {**n, "status": _status(data)[n["name"]] if n["kind"] != "compensation" else "compensated"}
        for n in saga.graph("json")["nodes"]
    ]
    by_id = {n["id"]: n for n in data["nodes"]}
    assert by_id["s0_undo"]["name"] == "release" and by_id["s1"]["when"] == "is_big"
    assert _status(data)["ship"] == "pending" and _status(data)["charge"] == "failed"


def test_a_definition_whose_steps_changed_is_not_drawn_over_the_run(viewer: Viewer) -> None:
    viewer.write(_engine_trace(saga, "S-1"))
    changed = create_workflow("saga").step("reserve", keep).step("other", keep)
    viewer.client.app.state.workflows = {"saga": changed}  # type: ignore[attr-defined]
    data = _graph(viewer, "S-1")
    assert data["source"] == "trace"
    assert "other" not in _status(data)


def test_the_graph_follows_the_replay_position(viewer: Viewer) -> None:
    events = _engine_trace(saga, "S-1")
    viewer.write(events)
    first_done = next(i for i, ev in enumerate(events) if ev["type"] == "step:complete") + 1
    data = _graph(viewer, "S-1", f"?at={first_done}")
    assert _status(data)["reserve"] == "completed"
    assert _status(data)["charge"] == "pending"
    assert data["run"]["status"] == "running"
    assert _graph(viewer, "S-1", f"?at={first_done}&live=1")["run"]["status"] == "rolled_back"


def _branch_run(run_id: str, name: str = "stock") -> list[dict[str, Any]]:
    w = RunWriter(
        run_id,
        "checkout",
        [("validate", False), ("reserve", False), (name, False), ("fraud", True), ("thumbs", False),
         ("invoice", False)],
    )  # fmt: skip

    def ev(type_: str, step_name: str, **more: Any) -> dict[str, Any]:
        return w.event(type_, stepName=step_name, stepIndex=w.index(step_name), **more)

    return [
        w.start(),
        w.step_start("validate"),
        w.complete("validate", 1),
        ev("step:start", "reserve", attempt=1),
        ev("step:start", name, group="reserve", attempt=1),
        ev("step:start", "fraud", group="reserve", attempt=1, commit=True),
        ev("step:complete", name, group="reserve", attempt=1),
        ev("step:error", "fraud", group="reserve", attempt=1, error="no", errorType="FatalError"),
        ev("step:start", "thumbs", attempt=1),
        *[ev("step:start", f"thumbs[{i}]", group="thumbs", item=i, attempt=1) for i in range(3)],
        ev("step:complete", "thumbs[0]", group="thumbs", item=0, attempt=1),
        ev("step:error", "thumbs[1]", group="thumbs", item=1, attempt=1, error="x"),
        ev("step:start", "invoice", attempt=1, childId=f"{run_id}/invoice"),
    ]


def test_groups_maps_and_calls_from_the_trace(viewer: Viewer) -> None:
    viewer.write(_branch_run("C-1"))
    data = _graph(viewer, "C-1")
    assert {g["name"]: (g["kind"], g["members"]) for g in data["groups"]} == {
        "reserve": ("parallel", ["s2", "s3"]),
        "thumbs": ("map", ["s4_each"]),
    }
    status = {n["id"]: n["status"] for n in data["nodes"]}
    assert status["s2"] == "completed" and status["s3"] == "failed" and status["s1"] == "running"
    each = next(n for n in data["nodes"] if n["kind"] == "each")
    assert each["items"] == {"completed": 1, "failed": 1, "running": 1} and each["status"] == "running"
    assert "thumbs[0]" not in {n["name"] for n in data["nodes"]}  # items are counted, not drawn
    call = next(n for n in data["nodes"] if n["name"] == "invoice")
    assert call["kind"] == "call" and call["child_run"] == "C-1/invoice"
    assert call["child_url"] == "/runs/C-1%2Finvoice"
    assert next(n for n in data["nodes"] if n["name"] == "fraud")["commit"] is True


HOSTILE = '<script>alert("x")</script> ]"--> #quot; \u202e'


def test_hostile_names_are_escaped_in_the_partial_and_exact_in_the_json(viewer: Viewer) -> None:
    viewer.write(_branch_run("H-1", name=HOSTILE))
    data = _graph(viewer, "H-1")
    assert HOSTILE in _status(data)
    partial = viewer.client.get("/runs/H-1/graph", headers=HX)
    assert partial.status_code == 200
    assert "<script>" not in partial.text
    assert 'data-graph-src="/runs/H-1/graph.json"' in partial.text
    # the Mermaid text is escaped twice over: as Mermaid, and as HTML in its <pre>
    pre = partial.text.split("<pre>")[1].split("</pre>")[0]
    assert "&lt;script&gt;" not in pre and "#60;script#62;" in html.unescape(pre)


def test_lone_surrogates_in_names_are_json_not_an_error(viewer: Viewer) -> None:
    w = RunWriter("U-1", "w", [("a\ud800b", False)])
    viewer.trace.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(ev) for ev in (w.start(), w.step_start("a\ud800b"))]  # \\ud800 in the file
    viewer.trace.write_text("\n".join(lines) + "\n", encoding="ascii")
    response = viewer.client.get("/runs/U-1/graph.json")
    assert response.status_code == 200
    assert b"\\ud800" in response.content


def test_a_plain_visit_to_the_tab_opens_the_run_page_on_it(viewer: Viewer) -> None:
    viewer.write(_engine_trace(saga, "a/b?c"))
    response = viewer.client.get("/runs/a%2Fb%3Fc/graph", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/runs/a%2Fb%3Fc?tab=graph"
    assert _graph(viewer, "a%2Fb%3Fc")["run"]["id"] == "a/b?c"


def test_an_unknown_run(viewer: Viewer) -> None:
    viewer.write(_engine_trace(saga, "S-1"))
    assert viewer.client.get("/runs/nope/graph.json").status_code == 404
    partial = viewer.client.get("/runs/nope/graph", headers=HX)
    assert "is not in the trace" in partial.text


def test_the_run_page_links_the_tab_and_loads_its_own_script(viewer: Viewer) -> None:
    viewer.write(_engine_trace(saga, "S-1"))
    page = viewer.text("/runs/S-1")
    assert 'href="/runs/S-1/graph" class="run-tab" data-tab="graph"' in page
    assert '<section id="graph-panel" class="graph-panel" hidden></section>' in page
    assert '<script src="/static/graph.js" defer></script>' in page
    assert viewer.client.get("/static/graph.js").status_code == 200
    assert viewer.client.get("/static/graph.css").status_code == 200


def test_the_script_writes_no_markup() -> None:
    from viewer.templating import asset_dir

    script = (asset_dir("static") / "graph.js").read_text(encoding="utf-8")
    # (htmx swaps the server's escaped partial; the script itself never parses markup)
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script


def test_a_branch_defined_with_flux_step_is_drawn_from_its_definition(viewer: Viewer) -> None:
    flow = create_workflow("par").parallel("both", step("x", keep), step("y", keep))
    events = [ev for ev in _engine_trace(create_workflow("par").step("both", keep), "P-1")]
    for ev in events:  # the engine's trace of the group, as its meta.steps would list it
        if ev["type"] == "workflow:start":
            ev["meta"]["steps"] = [{"name": n, "commit": False} for n in ("both", "x", "y")]
    viewer.write(events)
    viewer.client.app.state.workflows = {"par": flow}  # type: ignore[attr-defined]
    data = _graph(viewer, "P-1")
    assert data["source"] == "definition"
    assert data["groups"] == [{"id": "s0", "name": "both", "kind": "parallel", "members": ["s1", "s2"]}]
    assert _status(data) == {"both": "completed", "x": "pending", "y": "pending"}


def test_a_child_run_named_like_the_tab_has_its_page(viewer: Viewer) -> None:
    viewer.write(
        [*_engine_trace(saga, "P"), *_engine_trace(saga, "P/graph"), *_engine_trace(saga, "P/graph.json")]
    )
    for child in ("P%2Fgraph", "P%2Fgraph.json"):
        page = viewer.client.get(f"/runs/{child}", follow_redirects=False)
        assert page.status_code == 200 and '<main class="run-page"' in page.text
    assert _graph(viewer, "P%2Fgraph")["run"]["id"] == "P/graph"
    assert _graph(viewer, "P")["run"]["id"] == "P"
    tab = viewer.client.get("/runs/P%2Fgraph.json/graph", headers=HX)
    assert 'data-graph-src="/runs/P%2Fgraph.json/graph.json"' in tab.text


def keep_item(ctx: Any) -> int:
    return 1


branchy = (
    create_workflow("branchy")
    .step("a", keep, compensate=release)
    .parallel("g", step("b1", keep, compensate=release), commit("b2", keep))
    .map("m", keep_item, items=lambda ctx: [1, 2, 3], max_concurrency=2)
    .step("z", declined)
)


def test_the_engines_trace_of_a_group_and_a_map(viewer: Viewer) -> None:
    viewer.write(_engine_trace(branchy, "B-1"))
    from_trace = _graph(viewer, "B-1")
    viewer.client.app.state.workflows = {"branchy": branchy}  # type: ignore[attr-defined]
    from_definition = _graph(viewer, "B-1")
    assert (from_trace["source"], from_definition["source"]) == ("trace", "definition")
    for data in (from_trace, from_definition):
        assert {g["name"]: g["kind"] for g in data["groups"]} == {"g": "parallel", "m": "map"}
        status = {n["id"]: n["status"] for n in data["nodes"]}
        assert status["s0"] == "compensated" and status["s0_undo"] == "compensated"
        assert status["s2"] == "compensated" and status["s3"] == "completed"
        assert status["s4_each"] == "completed" and status["s5"] == "failed"
        each = next(n for n in data["nodes"] if n["kind"] == "each")
        assert each["items"] == {"completed": 3}
        assert next(n for n in data["nodes"] if n["name"] == "b2")["commit"] is True
    assert next(n for n in from_definition["nodes"] if n["kind"] == "each")["label"] == [
        "keep_item", "× items, max 2 at once",
    ]  # fmt: skip


def test_a_run_only_the_storage_holds(tmp_path: Any) -> None:
    from starlette.testclient import TestClient

    from flux.storage import open_storage
    from viewer.server import create_app

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with FluxEngine(storage=url, default_backoff=Backoff(initial=0, jitter=0)) as engine:
        engine.execute_sync(branchy, {}, id="ST-1")
    app = create_app(tmp_path / "trace.ndjson")  # no trace at all
    storage = app.state.storage = open_storage(url, create=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        stored = client.get("/runs/ST-1/graph.json").json()
        app.state.workflows = {"branchy": branchy}
        defined = client.get("/runs/ST-1/graph.json").json()
        assert client.get("/runs/nope/graph.json").status_code == 404
        assert "The definition of <code>branchy</code>" in client.get("/runs/ST-1/graph", headers=HX).text
        app.state.workflows = {}
        assert "Drawn from the stored run" in client.get("/runs/ST-1/graph", headers=HX).text
    asyncio.run(storage.close())
    assert (stored["source"], defined["source"]) == ("storage", "definition")
    assert stored["run"] == {"id": "ST-1", "status": "rolled_back"}
    for data in (stored, defined):
        status = {n["id"]: n["status"] for n in data["nodes"]}
        assert status["s0"] == "compensated" and status["s0_undo"] == "compensated"
        assert status["s5"] == "failed" and status["s4_each"] == "completed"
        assert next(n for n in data["nodes"] if n["kind"] == "each")["items"] == {"completed": 3}
    # without the definition, the stored shape knows kinds, not which group a branch is in
    assert {n["name"]: n["kind"] for n in stored["nodes"] if n["kind"] != "compensation"}["g"] == "parallel"
    assert defined["groups"][0]["members"] == ["s2", "s2_undo", "s3"]
