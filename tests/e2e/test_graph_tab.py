"""The run page's graph tab in a real Chromium: on a real ``flux dev`` process (the graph from
the trace), and on a real uvicorn serving an app that knows the definition.

Every wait is on something in the page (Playwright's auto-waiting ``expect``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flux import Backoff, FatalError, FluxEngine, FluxSilentLogger, JsonFileTraceSink, create_workflow
from flux.builder import step
from tests.e2e.conftest import Server
from tests.viewer.factory import RunWriter

pytestmark = pytest.mark.browser

#: Markup if it were ever parsed: an image whose error handler marks the page.
HOSTILE = '<img src=x onerror="pwned=1">'


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def keep(ctx: Any) -> int:
    return 1


def undo(ctx: Any) -> None: ...


def declined(ctx: Any) -> None:
    raise FatalError("declined")


saga = (
    create_workflow("saga")
    .step(HOSTILE, keep, compensate=undo)
    .parallel("checks", step("stock", keep), step("fraud", keep, compensate=undo))
    .commit("charge", declined)
    .step("ship", keep)
)


def _run(trace: Path, run_id: str) -> None:
    """The real engine runs the saga, writing its trace (in a thread of its own: Playwright's
    sync API holds an event loop in this one)."""
    errors: list[BaseException] = []

    def go() -> None:
        try:
            sink = JsonFileTraceSink(trace)
            backoff = Backoff(initial=0, jitter=0)
            engine = FluxEngine(trace=sink, logger=FluxSilentLogger(), default_backoff=backoff)
            with engine:
                engine.execute_sync(saga, {}, id=run_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=go)
    worker.start()
    worker.join()
    assert not errors, errors


def _open_graph(page: Any, url: str) -> Any:
    page.goto(url)
    page.locator('.run-tabs [data-tab="graph"]').click()
    svg = page.locator("#graph-panel svg.graph-svg")
    expect(svg).to_have_count(1)
    return svg


def _assert_hostile_name_is_text(page: Any, svg: Any) -> None:
    texts = svg.locator("g.gnode text tspan.gname").all_text_contents()
    assert HOSTILE in texts
    assert page.locator("#graph-panel img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_the_tab_draws_a_node_per_step_coloured_by_the_run(server: Server, page: Any) -> None:
    _run(server.trace, "SAGA-1")
    svg = _open_graph(page, server.url + "/runs/SAGA-1")
    expect(page.locator("#timeline")).to_be_hidden()
    # one node per step, and one for the compensation
    statuses = {
        node.get_attribute("data-step"): node.get_attribute("class")
        for node in svg.locator("g.gnode:not(.gk-compensation)").all()
    }
    assert set(statuses) == {HOSTILE, "stock", "fraud", "charge", "ship"}
    # the engine's trace of a saga: it failed at the commit, undid the steps before it
    assert "gs-compensated" in statuses[HOSTILE].split()
    assert "gs-failed" in statuses["charge"].split() and "gk-commit" in statuses["charge"].split()
    assert "gs-pending" in statuses["ship"].split()
    assert "gs-completed" in statuses["stock"].split()  # nothing to undo
    assert "gs-compensated" in statuses["fraud"].split()
    expect(svg.locator('g.ggroup.gk-parallel[data-step="checks"]')).to_have_count(1)
    expect(svg.locator('g.gnode.gk-compensation[data-status="compensated"]')).to_have_count(2)
    expect(svg.locator("path.gedge.ge-compensate")).to_have_count(2)
    _assert_hostile_name_is_text(page, svg)
    assert page.url.endswith("/runs/SAGA-1?tab=graph")  # a reload opens the tab again
    # and back to the timeline
    page.locator('.run-tabs [data-tab="timeline"]').click()
    expect(page.locator("#timeline")).to_be_visible()
    expect(page.locator("#graph-panel")).to_be_hidden()
    assert page.url.endswith("/runs/SAGA-1")


def test_a_link_to_the_tab_opens_the_page_on_it(server: Server, page: Any) -> None:
    _run(server.trace, "SAGA-2")
    page.goto(server.url + "/runs/SAGA-2/graph")  # a plain visit: redirected to ?tab=graph
    expect(page.locator("#graph-panel svg.graph-svg g.gnode")).not_to_have_count(0)
    assert page.url.endswith("/runs/SAGA-2?tab=graph")


def test_the_graph_follows_the_run_live(server: Server, page: Any) -> None:
    w = RunWriter("LIVE-1", "live", [("first", False), ("second", True)])
    server.trace.parent.mkdir(parents=True, exist_ok=True)
    with open(server.trace, "a", encoding="utf-8") as f:
        for ev in (w.start(), w.step_start("first")):
            f.write(json.dumps(ev) + "\n")
    svg = _open_graph(page, server.url + "/runs/LIVE-1")
    expect(svg.locator('g.gnode[data-step="first"]')).to_have_attribute("data-status", "running")
    with open(server.trace, "a", encoding="utf-8") as f:
        for ev in (w.complete("first", 1), w.step_start("second")):
            f.write(json.dumps(ev) + "\n")
    first = page.locator('#graph-panel g.gnode[data-step="first"]')
    expect(first).to_have_attribute("data-status", "completed")
    expect(first).to_have_class("gnode gk-step gs-completed")
    second = page.locator('#graph-panel g.gnode[data-step="second"]')
    expect(second).to_have_attribute("data-status", "running")


class _ThreadServer:
    """``viewer.server``'s uvicorn server on a free port, in a thread: for an app that knows
    the definitions (what ``flux dev --workflows`` gives it)."""

    def __init__(self, trace: Path, workflows: dict[str, Any]) -> None:
        from viewer.server import create_app, make_server

        app = create_app(trace)
        app.state.workflows = workflows
        self.server = make_server(app, "127.0.0.1", 0)
        self.loop = asyncio.new_event_loop()
        serve = self._serve()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(serve,), daemon=True)
        self.ready = threading.Event()
        self.thread.start()
        assert self.ready.wait(30), "uvicorn did not start"
        self.url = f"http://127.0.0.1:{self.server.port}"

    async def _serve(self) -> None:
        task = asyncio.ensure_future(self.server.serve())
        await self.server.listening.wait()
        self.ready.set()
        await task

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def defined(tmp_path: Path) -> Iterator[_ThreadServer]:
    trace = tmp_path / "trace.ndjson"
    trace.touch()
    srv = _ThreadServer(trace, {"saga": saga})
    try:
        yield srv
    finally:
        srv.stop()


def test_the_definition_is_drawn_when_the_dashboard_knows_it(
    defined: _ThreadServer, page: Any, tmp_path: Path
) -> None:
    _run(tmp_path / "trace.ndjson", "SAGA-3")
    svg = _open_graph(page, defined.url + "/runs/SAGA-3")
    expect(page.locator("#graph-panel .graph-source")).to_contain_text("The definition of saga")
    undo_nodes = svg.locator("g.gnode.gk-compensation")
    expect(undo_nodes).to_have_count(2)
    assert {n.get_attribute("data-step") for n in undo_nodes.all()} == {"undo"}  # the function's name
    expect(svg.locator("g.gnode.gk-commit")).to_have_attribute("data-step", "charge")
    _assert_hostile_name_is_text(page, svg)


def test_groups_and_maps_are_boxes_around_their_branches(server: Server, page: Any) -> None:
    steps = [("validate", False), ("reserve", False), ("stock", False), ("fraud", True), ("thumbs", False)]
    w = RunWriter("BR-1", "checkout", steps)

    def ev(type_: str, name: str, **more: Any) -> dict[str, Any]:
        return w.event(type_, stepName=name, stepIndex=w.index(name), attempt=1, **more)

    events = [
        w.start(),
        ev("step:start", "validate"),
        ev("step:complete", "validate"),
        ev("step:start", "reserve"),
        ev("step:start", "stock", group="reserve"),
        ev("step:start", "fraud", group="reserve"),
        ev("step:complete", "stock", group="reserve"),
        ev("step:complete", "fraud", group="reserve"),
        ev("step:complete", "reserve"),
        ev("step:start", "thumbs"),
        *[ev("step:start", f"thumbs[{i}]", group="thumbs", item=i) for i in range(3)],
        ev("step:complete", "thumbs[0]", group="thumbs", item=0),
        ev("step:error", "thumbs[1]", group="thumbs", item=1, error="x"),
    ]
    server.trace.parent.mkdir(parents=True, exist_ok=True)
    server.trace.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    svg = _open_graph(page, server.url + "/runs/BR-1")
    group = svg.locator('g.ggroup.gk-parallel[data-step="reserve"]')
    expect(group).to_have_attribute("data-status", "completed")
    box = group.locator("rect.gbox").bounding_box()
    for name in ("stock", "fraud"):
        node = svg.locator(f'g.gnode[data-step="{name}"]').bounding_box()
        assert box["x"] <= node["x"] and node["x"] + node["width"] <= box["x"] + box["width"]
        assert box["y"] <= node["y"] and node["y"] + node["height"] <= box["y"] + box["height"]
    stock = svg.locator('g.gnode[data-step="stock"] .gshape').bounding_box()
    fraud = svg.locator('g.gnode[data-step="fraud"] .gshape').bounding_box()
    middle = [b["y"] + b["height"] / 2 for b in (stock, fraud)]
    assert abs(middle[0] - middle[1]) < 1 and stock["x"] + stock["width"] <= fraud["x"]  # side by side
    expect(svg.locator('g.ggroup.gk-map[data-step="thumbs"]')).to_have_count(1)
    each = svg.locator("g.gnode.gk-each")
    expect(each).to_contain_text("× items, max 1 at once")
    expect(each).to_contain_text("1 done · 1 failed · 1 running")
    # two edges into the group's branches, two out of them into the map's handler
    expect(svg.locator("path.gedge.ge-next")).to_have_count(4)


def test_a_node_leads_to_its_step_on_the_timeline(server: Server, page: Any) -> None:
    _run(server.trace, "SAGA-4")
    svg = _open_graph(page, server.url + "/runs/SAGA-4")
    svg.locator('g.gnode[data-step="charge"]').click()
    expect(page.locator("#step-detail .detail")).to_have_attribute("data-step", "charge")
    expect(page.locator("#timeline")).to_be_visible()
