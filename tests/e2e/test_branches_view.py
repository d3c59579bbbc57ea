"""Branches on the run page in a real Chromium on a real ``flux dev`` (SPEC §11): two
branches' bars side by side in time, a map's counts and its items opened, a call's row
to the child's page and back, and a branch appearing live.

Every wait is on something in the page (Playwright's auto-waiting ``expect``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.viewer.branch_events import BranchWriter, call_events, checkout, map_events

pytestmark = pytest.mark.browser


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def write(server: Server, events: list[dict[str, Any]]) -> None:
    server.trace.parent.mkdir(parents=True, exist_ok=True)
    with open(server.trace, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(ev) + "\n" for ev in events)


def _box(page: Any, step: str) -> Any:
    bar = page.locator(f'#timeline .trow.step[data-step="{step}"] .track .bar').first
    expect(bar).to_be_visible()
    return bar.bounding_box()


def test_two_branches_bars_overlap_in_time(server: Server, page: Any) -> None:
    write(server, checkout())
    page.goto(server.url + "/runs/CO-1")
    stock, fraud = _box(page, "stock"), _box(page, "fraud")
    assert fraud["x"] < stock["x"] + stock["width"] and stock["x"] < fraud["x"] + fraud["width"]
    group = _box(page, "reserve")
    rows = page.locator("#timeline .trow.step").evaluate_all("rows => rows.map(r => r.dataset.step)")
    assert rows[1:4] == ["reserve", "stock", "fraud"]
    assert group["x"] <= stock["x"]  # the group's bar spans its branches'


def test_a_maps_row_counts_its_items_and_opens_them(server: Server, page: Any) -> None:
    w = BranchWriter("MAP-E", workflow="thumbs", steps=(("thumbnails", False),))
    write(server, [w.start(), *map_events(w, items=120, failed=(3, 101), running=(7,))])
    page.goto(server.url + "/runs/MAP-E")
    counts = page.locator('#timeline .trow.step[data-step="thumbnails"] .map-counts')
    expect(counts).to_contain_text("120 items: 117 done · 2 failed · 1 running")
    expect(page.locator("#timeline .trow.step")).to_have_count(1)
    counts.get_by_text("open the items").click()
    table = page.locator("#step-detail table.items")
    expect(table.locator("tbody tr")).to_have_count(50)
    expect(page.locator("#step-detail .pager")).to_contain_text("items 1–50 of 120")
    page.locator("#step-detail .pager a.next").click()
    expect(page.locator("#step-detail .pager")).to_contain_text("items 51–100 of 120")
    page.locator('#step-detail .item-filter a[data-state="failed"]').click()
    expect(table.locator("tbody tr")).to_have_count(2)
    table.get_by_role("link", name="thumbnails[101]").click()
    expect(page.locator("#step-detail .detail")).to_have_attribute("data-step", "thumbnails[101]")
    expect(page.locator("#step-detail")).to_contain_text("cannot resize item 101")


def test_a_live_update_keeps_the_page_of_items_open(server: Server, page: Any) -> None:
    w = BranchWriter("MAP-L", workflow="thumbs", steps=(("thumbnails", False),))
    write(server, [w.start(), *map_events(w, items=120, running=(119,))])
    page.goto(server.url + "/runs/MAP-L?step=thumbnails&items=50")
    pager = page.locator("#step-detail .pager")
    expect(pager).to_contain_text("items 51–100 of 120")
    write(server, [w.branch_error("thumbnails[119]", "thumbnails", "too big", "ValueError", item=119)])
    expect(page.locator("#step-detail .item-filter")).to_contain_text("1 failed")
    expect(pager).to_contain_text("items 51–100 of 120")


def test_the_call_row_leads_to_the_child_and_the_child_back(server: Server, page: Any) -> None:
    write(server, checkout())
    page.goto(server.url + "/runs/CO-1")
    page.locator('#timeline .trow.step[data-step="invoice"] a.child-link').click()
    expect(page).to_have_url(re.compile(r"/runs/CO-1%2Finvoice$"))
    expect(page.locator("code.run-id")).to_have_text("CO-1/invoice")
    expect(page.locator('#timeline .trow.step[data-step="render"]')).to_have_count(1)
    page.locator("a.parent-link").click()
    expect(page).to_have_url(re.compile(r"/runs/CO-1\?step=invoice$"))
    expect(page.locator("#step-detail .detail")).to_have_attribute("data-step", "invoice")


def test_a_branch_appended_to_the_trace_appears_on_the_open_page(server: Server, page: Any) -> None:
    w = BranchWriter("LIVE-B", workflow="checkout", steps=(("reserve", False),))
    write(server, [w.start(), w.step_start("reserve"), w.branch_start("stock", "reserve")])
    page.goto(server.url + "/runs/LIVE-B")
    expect(page.locator('#timeline .trow.step[data-step="stock"]')).to_have_count(1)
    write(server, [w.branch_start("fraud", "reserve")])
    fraud = page.locator('#timeline .trow.step.branch[data-step="fraud"]')
    expect(fraud).to_have_attribute("data-group", "reserve")
    write(server, [w.branch_error("fraud", "reserve", "card is stolen", "FraudError")])
    write(server, [w.branch_error("stock", "reserve", "cancelled", "BranchCancelledError")])
    expect(page.locator('#timeline .trow.step[data-step="stock"]')).to_have_attribute(
        "data-status", "cancelled"
    )
    expect(fraud).to_have_attribute("data-status", "failed")


def test_a_child_named_like_a_fragment_has_its_page_through_uvicorn(server: Server, page: Any) -> None:
    w = BranchWriter("P", workflow="parent", steps=(("live", False),))
    parent, child = call_events(w, "live")
    write(server, [w.start(), parent[0], *child, parent[1], w.finish()])
    page.goto(server.url + "/runs/P")
    page.locator('#timeline .trow.step[data-step="live"] a.child-link').click()
    expect(page).to_have_url(re.compile(r"/runs/P%2Flive$"))
    expect(page.locator("code.run-id")).to_have_text("P/live")
    expect(page.locator('#timeline .trow.step[data-step="render"]')).to_have_count(1)
    write(server, [{**child[-1], "seq": 99, "type": "workflow:error", "status": "failed", "error": "late"}])
    expect(page.locator("#run-status")).to_have_attribute("data-status", "failed")  # its live updates too
