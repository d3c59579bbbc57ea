"""Every page and fragment, through Starlette's TestClient."""

from __future__ import annotations

import html
import re
from pathlib import Path

from tests.viewer.conftest import Viewer
from tests.viewer.factory import T0, RunWriter, completed_run, ndjson, saga_run
from viewer.query import PER_PAGE


def rows(page: str) -> list[str]:
    return re.findall(r'<tr class="run" data-run-id="([^"]*)"', page)


def test_a_missing_trace_explains_how_to_produce_one(viewer: Viewer) -> None:
    page = viewer.text("/")
    assert 'id="missing-trace"' in page
    assert "JsonFileTraceSink" in page and "flux dev --demo" in page
    assert html.escape(str(viewer.trace)) in page
    assert not viewer.trace.exists() and not viewer.trace.parent.exists()


def test_an_empty_trace_says_so(viewer: Viewer) -> None:
    viewer.write([])
    page = viewer.text("/")
    assert "The trace is empty so far" in page and 'id="missing-trace"' not in page


def test_the_runs_page_lists_runs_newest_first_with_their_columns(viewer: Viewer) -> None:
    viewer.write(completed_run("OLD", t0=T0) + saga_run("NEW", t0=T0 + 60_000))
    page = viewer.text("/")
    assert rows(page) == ["NEW", "OLD"]
    new = page[page.index('data-run-id="NEW"') :].split("</tr>")[0]
    assert "rolled back" in new and "FatalError" in new and "out of stock" in new
    assert "4/5" in new and "2026-01-01 00:01:00" in new
    assert 'href="/runs/NEW"' in new
    old = page[page.index('data-run-id="OLD"') :].split("</tr>")[0]
    assert "completed" in old and "2/2" in old


def test_filters_and_search_narrow_the_list(viewer: Viewer) -> None:
    viewer.write(
        completed_run("ORD-1")
        + completed_run("INV-1", "invoice", t0=T0 + 1000)
        + saga_run("ORD-2", t0=T0 + 2000)
    )
    assert rows(viewer.text("/?workflow=invoice")) == ["INV-1"]
    assert rows(viewer.text("/?status=completed")) == ["INV-1", "ORD-1"]
    assert rows(viewer.text("/?q=ord")) == ["ORD-2", "ORD-1"]
    assert rows(viewer.text("/?q=ORD&status=rolled_back")) == ["ORD-2"]
    assert "No run matches these filters" in viewer.text("/?q=nothing")
    page = viewer.text("/?workflow=invoice")
    assert '<option value="invoice" selected>' in page


def test_the_fragment_keeps_the_address_bar_in_step(viewer: Viewer) -> None:
    viewer.write(completed_run("R"))
    response = viewer.get("/fragments/runs?status=completed&q=R")
    assert response.headers["HX-Replace-Url"] == "/?status=completed&q=R"
    assert rows(response.text) == ["R"] and "<html" not in response.text


def test_new_workflow_names_reach_the_filter_out_of_band(viewer: Viewer) -> None:
    viewer.write(completed_run("R"))
    assert "hx-swap-oob" not in viewer.text("/fragments/runs?known=1")
    fragment = viewer.text("/fragments/runs?known=0")
    assert 'id="workflow-filter" hx-swap-oob="true"' in fragment


def test_the_runs_page_paginates(viewer: Viewer) -> None:
    events = []
    for i in range(PER_PAGE + 5):
        events += completed_run(f"R{i:04d}", t0=T0 + i * 1000)[:2]
    viewer.write(events)
    first = viewer.text("/")
    assert len(rows(first)) == PER_PAGE and rows(first)[0] == f"R{PER_PAGE + 4:04d}"
    assert "page 1 of 2" in first and "older →" in first
    second = viewer.text("/?page=2")
    assert rows(second) == [f"R{i:04d}" for i in range(4, -1, -1)]
    assert rows(viewer.text("/?page=99")) == rows(second)
    assert rows(viewer.text("/?page=x")) == rows(first)


def test_malformed_lines_are_counted_on_the_page_with_line_numbers(viewer: Viewer) -> None:
    viewer.trace.parent.mkdir(parents=True)
    good = ndjson(completed_run("R")).splitlines(keepends=True)
    viewer.trace.write_bytes(good[0] + b"{oops\n" + b"".join(good[1:]) + b"nope\n")
    page = viewer.text("/")
    assert "2 malformed lines skipped" in page
    assert 'data-line="2"' in page and 'data-line="8"' in page
    assert rows(page) == ["R"]


def test_a_half_written_last_line_is_not_shown_or_counted(viewer: Viewer) -> None:
    data = ndjson(completed_run("R"))
    viewer.trace.parent.mkdir(parents=True)
    viewer.trace.write_bytes(data[:-25])
    page = viewer.text("/")
    assert "malformed" not in page and ">running<" in page
    viewer.append(data[-25:])
    assert ">completed<" in viewer.text("/")


def test_a_reset_trace_starts_over(viewer: Viewer) -> None:
    viewer.write(saga_run("OLD"))
    assert rows(viewer.text("/")) == ["OLD"]
    with open(viewer.trace, "r+b") as f:
        f.truncate(0)
        f.write(ndjson(completed_run("NEW")))
    assert rows(viewer.text("/")) == ["NEW"]
    assert viewer.get("/runs/OLD").status_code == 404
    assert "is not in the trace" in viewer.text("/runs/OLD/timeline")


def test_gravito_style_runs_are_listed_and_drawn(viewer: Viewer) -> None:
    w = RunWriter("ts-1", "ts-flow", steps=(("a", False), ("b", False)), gravito=True)
    viewer.write([w.start(), w.step_start("a"), w.retry("a", 1, "boom"), w.complete("a"), w.skipped("b")])
    assert rows(viewer.text("/")) == ["ts-1"]
    page = viewer.text("/runs/ts-1")
    assert page.count('class="bar outcome-') == 2 and "boom" in page
    assert 'data-step="b" data-status="skipped"' in page


def test_unknown_events_do_not_break_any_page(viewer: Viewer) -> None:
    w = RunWriter("R")
    viewer.write([w.start(), w.event("step:telemetry", stepName="fetch", cpu=[1, 2]), w.event("x:y")])
    assert rows(viewer.text("/")) == ["R"]
    assert "All 3 events" in viewer.text("/runs/R")
    assert "x:y" in viewer.text("/runs/R/timeline?upto=3&live=0")


def test_the_run_page_draws_the_timeline(viewer: Viewer) -> None:
    viewer.write(saga_run("ORD-1"))
    page = viewer.text("/runs/ORD-1")
    assert 'data-status="rolled_back"' in page
    assert "TimeoutError" in page and "gateway timeout" in page
    # One row per step, in definition order, then the compensation rows.
    order = re.findall(r'<div class="trow step [^"]*"\s+data-step="([^"]*)"', page)
    assert order == ["fetch", "payment", "auto", "approve", "fulfill", "payment"]
    assert page.count('class="bar outcome-retry') == 1
    assert 'data-step="auto" data-status="skipped"' in page and "skip-mark" in page
    assert 'class="bar wait' in page and "approval" in page
    assert 'class="badge commit"' in page
    assert 'data-compensation="1"' in page
    assert 'sse-connect="/events?run=ORD-1&amp;since=' in page


def test_the_step_detail_shows_attempts_output_and_data_changes(viewer: Viewer) -> None:
    viewer.write(saga_run("ORD-1"))
    detail = viewer.text("/runs/ORD-1/step?step=payment")
    assert "gateway timeout" in detail and "retry" in detail
    assert "{&#39;charged&#39;: 10}" in detail  # the output as Python reads it (dash-run)
    assert "data.paid" in detail and "added" in detail
    assert "Compensation: compensated" in detail
    assert "Select a step" in viewer.text("/runs/ORD-1/step")
    assert "has no event" in viewer.text("/runs/ORD-1/step?step=nope")
    full = viewer.text("/runs/ORD-1?step=payment")
    assert "data.paid" in full and "trow step is-compensated selected" in full


def test_replay_fragments_show_the_run_after_event_k(viewer: Viewer) -> None:
    events = saga_run("ORD-1")
    viewer.write(events)
    at_5 = viewer.text("/runs/ORD-1/timeline?upto=5&live=0")
    assert 'data-upto="5" data-total="17"' in at_5
    assert "after event 5 of 17" in at_5 and "step:retry" in at_5
    assert "outcome-ok" in at_5 and "outcome-retry" in at_5 and "skip-mark" not in at_5
    at_0 = viewer.text("/runs/ORD-1/timeline?upto=0&live=0")
    assert "No step has started" in at_0
    live = viewer.text("/runs/ORD-1/timeline?upto=5&live=1")
    assert 'data-upto="17"' in live
    detail = viewer.text("/runs/ORD-1/step?step=approve&upto=10&live=0")
    assert "still waiting" in detail


def test_a_running_run_is_drawn_open_and_refreshes_as_it_grows(viewer: Viewer) -> None:
    events = saga_run("ORD-1")
    viewer.write(events[:9])
    page = viewer.text("/runs/ORD-1")
    assert 'data-status="running"' in page and "bar outcome-running open" in page
    viewer.append(events[9:10])
    header = viewer.text("/runs/ORD-1/header")
    assert 'data-status="suspended"' in header and "approval" in header
    assert "bar wait open" in viewer.text("/runs/ORD-1/timeline")


def test_run_ids_with_slashes_and_spaces_have_working_links(viewer: Viewer) -> None:
    viewer.write(completed_run("tenant/a b?c#d"))
    page = viewer.text("/")
    assert 'href="/runs/tenant%2Fa%20b%3Fc%23d"' in page
    assert "tenant/a b?c#d" in viewer.text("/runs/tenant%2Fa%20b%3Fc%23d")
    assert "All 6 events" in viewer.text("/runs/tenant%2Fa%20b%3Fc%23d/timeline")


def test_an_unknown_run_is_a_404_page(viewer: Viewer) -> None:
    viewer.write(completed_run("R"))
    response = viewer.get("/runs/nope")
    assert response.status_code == 404 and "is not in the trace" in response.text


def test_a_trace_written_by_the_engine_renders(viewer: Viewer) -> None:
    # Written by flux's JsonFileTraceSink: retries, a skipped step, a saga, a signal.
    sample = Path(__file__).parent / "fixtures" / "engine-sample.ndjson"
    viewer.trace.parent.mkdir(parents=True)
    viewer.trace.write_bytes(sample.read_bytes())
    page = viewer.text("/")
    assert "malformed" not in page
    statuses = dict(re.findall(r'data-run-id="([^"]*)" data-status="([^"]*)"', page))
    assert sorted(statuses.values()) == ["completed", "completed", "rolled_back"]
    for run_id, status in statuses.items():
        run_page = viewer.text(f"/runs/{run_id}")
        assert f'data-status="{status}"' in run_page
    order = next(rid for rid, status in statuses.items() if status == "completed" and rid != "A1")
    assert viewer.text(f"/runs/{order}").count("bar outcome-retry") == 2
    assert "gateway timeout &lt;b&gt;x&lt;/b&gt;" in viewer.text(f"/runs/{order}")
    approval = viewer.text("/runs/A1")
    assert 'class="bar wait' in approval and "approve" in approval


def test_integer_timestamps_out_of_float_range_render(viewer: Viewer) -> None:
    w = RunWriter("BIG")
    events = [w.start(), w.step_start("fetch"), w.complete("fetch", 1)]
    events[1]["timestamp"] = 10**400
    events[2]["timestamp"] = -(10**400)
    viewer.write(events)
    viewer.append(
        b'{"v":1,"seq":9,"type":"step:start","workflowId":"BIG","timestamp":' + b"1" * 5000 + b"}\n"
    )
    assert 'data-run-id="BIG"' in viewer.text("/")
    assert 'data-step="fetch"' in viewer.text("/runs/BIG")
    assert viewer.get("/runs/BIG/step?step=fetch").status_code == 200
    assert viewer.get("/runs/BIG/timeline?upto=2&live=0").status_code == 200
