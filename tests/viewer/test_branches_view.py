"""Branches on the run page (SPEC §11, issue 11): a parallel group's branches as rows
under the group with overlapping bars, a map as one row with its items' counts and the
items opened from it, a call linked to its child run and back."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any

from tests.viewer.branch_events import BranchWriter, call_events, checkout, map_events, parallel_events
from tests.viewer.conftest import Viewer
from tests.viewer.factory import T0

HOSTILE = '<img src=x onerror="alert(1)">'


def _rows(timeline: str) -> list[str]:
    return re.findall(r'<div class="trow step[^"]*"\s+data-step="([^"]*)"', timeline)


def _row(timeline: str, step: str) -> str:
    match = re.search(
        rf'<div class="trow step[^"]*"\s+data-step="{re.escape(step)}".*?(?=<div class="trow|\Z)',
        timeline,
        re.S,
    )
    assert match, f"no row for {step}"
    return match.group(0)


def _bars(row: str) -> list[tuple[float, float]]:
    return [
        (float(a), float(b))
        for a, b in re.findall(
            r'<span class="bar (?:undo )?outcome-[^"]*"[^>]*style="left: ([\d.]+)%; width: ([\d.]+)%"', row
        )
    ]


def test_a_parallel_groups_branches_are_rows_under_the_group_with_overlapping_bars(viewer: Viewer) -> None:
    viewer.write(checkout())
    timeline = viewer.text("/runs/CO-1/timeline")
    assert _rows(timeline) == ["validate", "reserve", "stock", "fraud", "thumbnails", "invoice", "charge"]
    group = _row(timeline, "reserve")
    assert "kind-parallel" in group and ">parallel<" in group
    stock, fraud = _row(timeline, "stock"), _row(timeline, "fraud")
    assert 'data-group="reserve"' in stock and 'data-group="reserve"' in fraud
    (s0, sw), (f0, _), (f1, fw) = _bars(stock) + _bars(fraud)
    assert f0 < s0 + sw and s0 < f1 + fw  # they ran at once: the bars share time
    assert "fraud service busy" in fraud  # a branch's retry shows as any step's


def test_branches_count_in_their_groups_step_not_as_steps_of_their_own(viewer: Viewer) -> None:
    viewer.write(checkout(items=30))
    page = viewer.text("/runs/CO-1")
    steps = re.search(r'<dd id="run-steps">([^<]*)</dd>', page)
    assert steps and steps.group(1).strip() == "5 completed"
    runs = viewer.text("/fragments/runs")
    assert "5/5" in re.sub(r"\s+", "", re.sub(r"<[^>]+>", "", runs)) or "5 of 5" in runs, runs


def test_ten_thousand_items_are_one_row_with_counts(viewer: Viewer) -> None:
    w = BranchWriter("MAP-1", workflow="thumbs", steps=(("thumbnails", False),))
    viewer.write([w.start(), *map_events(w, items=10_000, failed=(3, 9_998), running=(7,))])
    timeline = viewer.text("/runs/MAP-1/timeline")
    assert _rows(timeline) == ["thumbnails"]
    assert 'data-step="thumbnails[' not in timeline and timeline.count('class="bar ') < 10
    row = _row(timeline, "thumbnails")
    counts = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", row.split('class="map-counts"', 1)[1])).strip()
    assert counts.startswith('data-items="10000"> 10,000 items: 9,997 done · 2 failed · 1 running'), counts
    assert "open the items" in row


def test_a_maps_items_open_in_its_detail_paged_and_filtered(viewer: Viewer) -> None:
    w = BranchWriter("MAP-2", workflow="thumbs", steps=(("thumbnails", False),))
    viewer.write([w.start(), *map_events(w, items=120, failed=(3, 101))])
    detail = viewer.text("/runs/MAP-2/step?step=thumbnails")
    assert re.findall(r'data-item="(\d+)"', detail) == [str(i) for i in range(50)]
    assert "items 1–50 of 120" in detail
    nxt = re.search(r'<a class="next" href="([^"]*)"', detail)
    assert nxt
    page2 = viewer.text(html.unescape(nxt.group(1)).replace("/runs/MAP-2?", "/runs/MAP-2/step?"))
    assert re.findall(r'data-item="(\d+)"', page2) == [str(i) for i in range(50, 100)]
    last = viewer.text("/runs/MAP-2/step?step=thumbnails&items=99999")
    assert re.findall(r'data-item="(\d+)"', last) == [str(i) for i in range(100, 120)]
    failed = viewer.text("/runs/MAP-2/step?step=thumbnails&items_state=failed")
    assert re.findall(r'data-item="(\d+)"', failed) == ["3", "101"]
    assert "cannot resize item 101" in failed
    bad = viewer.text("/runs/MAP-2/step?step=thumbnails&items=-5x")
    assert re.findall(r'data-item="(\d+)"', bad)[:1] == ["0"]
    item = viewer.text("/runs/MAP-2/step?step=thumbnails%5B3%5D")
    assert "Item 3 of the map" in item and "cannot resize item 3" in item


def test_a_call_links_to_its_child_and_the_child_back(viewer: Viewer) -> None:
    viewer.write(checkout())
    timeline = viewer.text("/runs/CO-1/timeline")
    link = re.search(r'<a class="badge kind child-link" href="([^"]*)"', _row(timeline, "invoice"))
    assert link and link.group(1) == "/runs/CO-1%2Finvoice"
    child = viewer.text(link.group(1))
    assert 'class="run-id">CO-1/invoice<' in child
    back = re.search(r'<a class="parent-link" href="([^"]*)"', child)
    assert back and html.unescape(back.group(1)) == "/runs/CO-1?step=invoice"
    assert "render" in viewer.text("/runs/CO-1%2Finvoice/timeline")
    detail = viewer.text("/runs/CO-1/step?step=invoice")
    assert 'href="/runs/CO-1%2Finvoice"' in detail


def test_a_child_whose_call_is_named_like_a_fragment_still_has_its_page(viewer: Viewer) -> None:
    # "P/live" in a URL is "/runs/P%2Flive": decoded, it reads as the live fragment of "P".
    for step in ("live", "header", "timeline", "step"):
        w = BranchWriter("P", workflow="parent", steps=((step, False),))
        parent, child = call_events(w, step)
        viewer.write([w.start(), parent[0], *child, parent[1], w.finish()])
        page = viewer.text(f"/runs/P%2F{step}")
        assert f'class="run-id">P/{step}<' in page and "<html" in page.lower(), step
        assert f'class="run-id">P/{step}<' in viewer.text(f"/runs/P%2F{step}/header")
        assert 'id="run-parent"' in viewer.text(f"/runs/P%2F{step}/live")


def test_a_branch_cancelled_by_its_sibling_reads_as_cancelled_and_the_siblings_error_stays(
    viewer: Viewer,
) -> None:
    w = BranchWriter("CO-2", workflow="checkout", steps=(("reserve", False),))
    events = [
        w.start(),
        w.step_start("reserve"),
        w.branch_start("stock", "reserve"),
        w.branch_start("fraud", "reserve"),
    ]
    events += [w.branch_error("fraud", "reserve", "card is stolen", "FraudError")]
    events += [w.branch_error("stock", "reserve", "cancelled: fraud failed", "BranchCancelledError")]
    events += [
        w.step_error("reserve", "card is stolen", "FraudError"),
        w.fail("card is stolen", "FraudError"),
    ]
    viewer.write(events)
    timeline = viewer.text("/runs/CO-2/timeline")
    stock = _row(timeline, "stock")
    assert 'data-status="cancelled"' in stock and "outcome-cancelled" in stock
    assert 'data-status="failed"' in _row(timeline, "fraud")
    head = viewer.text("/runs/CO-2/header")
    assert "FraudError" in head and "BranchCancelledError" not in head


def test_hostile_names_of_branches_groups_and_items_are_escaped(viewer: Viewer) -> None:
    w = BranchWriter("H-1", workflow="x", steps=((HOSTILE, False), ("m" + HOSTILE, False)))
    events = [w.start(), *parallel_events(w, HOSTILE, HOSTILE + "a", "b" + HOSTILE)]
    events += map_events(w, "m" + HOSTILE, items=3, failed=(1,))
    events[-2]["error"] = HOSTILE
    w2 = BranchWriter("H-1/" + HOSTILE, workflow="x")
    events += [w2.child_start("H-1", HOSTILE)]
    viewer.write(events)
    for url in (
        "/runs/H-1",
        "/runs/H-1/timeline",
        "/runs/H-1/step?step=" + HOSTILE,
        "/runs/H-1/step?step=m" + HOSTILE,
        "/runs/H-1/step?step=m" + HOSTILE + "[1]",
        "/runs/H-1%2F" + HOSTILE.replace("/", "%2F"),
    ):
        body = viewer.text(url)
        assert "<img" not in body, url
    rows = [html.unescape(name) for name in _rows(viewer.text("/runs/H-1/timeline"))]
    assert rows == [HOSTILE, HOSTILE + "a", "b" + HOSTILE, "m" + HOSTILE]


def test_groups_of_groups_and_a_group_named_after_itself_draw_every_row_once(viewer: Viewer) -> None:
    w = BranchWriter("H-2", workflow="x", steps=(("a", False),))
    events = [w.start(), w.branch_start("a", "b"), w.branch_start("b", "a"), w.branch_start("c", "c")]
    events += [w.branch_start("d", "a"), w.branch_start("e", None)]  # type: ignore[arg-type]
    viewer.write(events)
    rows = _rows(viewer.text("/runs/H-2/timeline"))
    assert sorted(rows) == ["a", "b", "c", "d", "e"] and rows[0] == "a"
    steps = re.search(r'<dd id="run-steps">([^<]*)</dd>', viewer.text("/runs/H-2"))
    assert steps and "running" in steps.group(1)


def test_a_branch_event_appended_updates_the_live_fragment(viewer: Viewer) -> None:
    w = BranchWriter("CO-3", workflow="checkout", steps=(("reserve", False),), t0=T0)
    events = [w.start(), w.step_start("reserve"), w.branch_start("stock", "reserve")]
    viewer.write(events)
    assert _rows(viewer.text("/runs/CO-3/live")) == ["reserve", "stock"]
    viewer.append([w.branch_start("fraud", "reserve")])
    live = viewer.text("/runs/CO-3/live")
    assert _rows(live) == ["reserve", "stock", "fraud"]
    assert 'data-status="running"' in _row(live, "fraud")


def test_a_maps_compensations_are_one_row_in_the_undo_section(viewer: Viewer) -> None:
    w = BranchWriter("MAP-U", workflow="thumbs", steps=(("thumbnails", False),))
    events = [
        w.start(),
        *map_events(w, items=1_000, failed=(999,)),
        w.step_error("thumbnails", "no", "ValueError"),
    ]
    events.append(w.rollback_start())
    for i in reversed(range(999)):  # item 5's compensation fails for good
        undo = (
            w.compensate_error(f"thumbnails[{i}]", "gone", final=True)
            if i == 5
            else w.compensate(f"thumbnails[{i}]")
        )
        undo.update(group="thumbnails", item=i)
        events.append(undo)
    events += [
        w.rollback_complete("compensation_failed"),
        w.fail("no", "ValueError", status="compensation_failed"),
    ]
    viewer.write(events)
    timeline = viewer.text("/runs/MAP-U/timeline")
    undo_rows = re.findall(r'<div class="trow step[^"]*compensation[^"]*"\s+data-step="([^"]*)"', timeline)
    assert undo_rows == ["thumbnails"]
    row = timeline[timeline.index("Undo (compensations)") :]
    counts = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", row.split("undo-counts", 1)[1])).strip()
    assert counts.startswith('"> 998 items undone · 1 item failed to undo'), counts
    assert len(_bars(row)) == 1
    detail = viewer.text("/runs/MAP-U/step?step=thumbnails&items_state=failed+to+undo")
    assert re.findall(r'data-item="(\d+)"', detail) == ["5"]


def test_the_headline_names_the_failure_not_a_branch_it_cancelled(viewer: Viewer) -> None:
    w = BranchWriter("CO-4", workflow="checkout", steps=(("reserve", False),))
    events = [
        w.start(),
        w.step_start("reserve"),
        w.branch_start("stock", "reserve"),
        w.branch_start("fraud", "reserve"),
    ]
    events += [w.branch_error("fraud", "reserve", "card is stolen", "FraudError")]
    events += [w.step_error("reserve", "card is stolen", "FraudError")]
    events += [w.branch_error("stock", "reserve", "cancelled: fraud failed", "BranchCancelledError")]
    events += [w.fail("card is stolen", "FraudError")]
    viewer.write(events)
    head = viewer.text("/runs/CO-4/header")
    failed = re.search(r'<p class="headline-main">.*?<b>([^<]*)</b>', head, re.S)
    assert failed and failed.group(1) == "reserve", head


def test_a_failed_groups_bar_is_labelled_with_its_wall_time(viewer: Viewer) -> None:
    w = BranchWriter("CO-5", workflow="checkout", steps=(("reserve", False),))
    events = [w.start(), w.step_start("reserve"), w.branch_start("bad", "reserve")]
    events += [w.branch_error("bad", "reserve", "card is stolen", "FraudError")]
    group_error = w.step_error("reserve", "card is stolen", "FraudError")
    group_error["duration"] = 0.0  # as the engine writes a failed group's
    events += [group_error, w.fail("card is stolen", "FraudError")]
    viewer.write(events)
    row = _row(viewer.text("/runs/CO-5/timeline"), "reserve")
    assert re.search(r'<span class="lbl[^"]*">30 ms</span>', row), row


def test_the_engines_own_trace_of_a_group_and_a_map(viewer: Viewer, tmp_path: Path) -> None:
    from flux import FluxEngine, FluxSilentLogger, JsonFileTraceSink, SQLiteStorage, create_workflow, step

    async def slow(ctx: Any) -> int:
        await asyncio.sleep(0.05)
        return 1

    async def bad(ctx: Any) -> int:
        await asyncio.sleep(0.01)
        raise RuntimeError("card stolen")

    def thumb(ctx: Any) -> int:
        return int(ctx.item) * 2

    maps = create_workflow("maps").map(
        "thumbnails", thumb, items=lambda ctx: list(range(300)), max_concurrency=4
    )
    fails = create_workflow("fails").parallel("reserve", step("slow", slow), step("bad", bad))
    sink = JsonFileTraceSink(viewer.trace)
    engine = FluxEngine(
        SQLiteStorage(tmp_path / "flux.db"), logger=FluxSilentLogger(), trace=sink, default_retries=0
    )

    async def main() -> None:
        await engine.execute(maps, {}, id="E-MAP")
        await engine.execute(fails, {}, id="E-PAR")

    asyncio.run(main())
    sink.close()
    timeline = viewer.text("/runs/E-MAP/timeline")
    assert _rows(timeline) == ["thumbnails"]
    assert "300 items: 300 done" in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", timeline))
    timeline = viewer.text("/runs/E-PAR/timeline")
    assert _rows(timeline) == ["reserve", "slow", "bad"]
    assert 'data-status="cancelled"' in _row(timeline, "slow")
    assert 'data-status="failed"' in _row(timeline, "bad")
    runs = re.sub(r"\s+", "", re.sub(r"<[^>]+>", "", viewer.text("/fragments/runs")))
    assert "1/1" in runs and "0/1" in runs  # each run has one step: its group
