"""The runs page in a real Chromium: pager, chips, search, times, keys, a phone's width,
and the live mark when the stream drops."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import DEADLINE_S, Server
from tests.viewer.factory import T0, RunWriter, completed_run, ndjson, saga_run

pytestmark = pytest.mark.browser

LONG_ID = "tenant-" + "x" * 30 + "/order-" + "9" * 40 + "_retry-attempt-final"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def write(server: Server, events: list[dict[str, Any]]) -> None:
    server.trace.parent.mkdir(parents=True, exist_ok=True)
    server.trace.write_bytes(ndjson(events))


def failed_run(run_id: str, t0: float) -> list[dict[str, Any]]:
    w = RunWriter(run_id, "payments", t0=t0)
    return [
        w.start({"customer": "Grace Hopper", "amount": 99.8}),
        w.step_start("fetch"),
        w.complete("fetch", 1),
        w.step_start("payment", max_retries=1),
        w.retry("payment", 1, "gateway timeout", "TimeoutError"),
        w.step_start("payment", attempt=2, max_retries=1),
        w.step_error("payment", "card declined", "CardError", attempt=2),
        w.fail("card declined", "CardError"),
    ]


def many_runs(n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(n):
        events += completed_run(f"R{i:04d}", t0=T0 + i * 1000)
    return events


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    pg = context.new_page()
    pg.set_default_timeout(DEADLINE_S * 1000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], errors


def row_ids(page: Any) -> list[str]:
    return list(page.locator("#runs tr.run").evaluate_all("rows => rows.map(r => r.dataset.runId)"))


def test_the_pager_leaves_page_one_and_comes_back(server: Server, page: Any) -> None:
    write(server, many_runs(130))
    page.goto(server.url + "/")
    expect(page.locator("#runs tr.run")).to_have_count(100)
    page.get_by_text("older →").click()
    expect(page.locator(".pager")).to_contain_text("page 2 of 2")
    expect(page.locator("#runs tr.run")).to_have_count(30)
    assert row_ids(page)[0] == "R0029"
    expect(page).to_have_url(re.compile(r"page=2"))
    page.get_by_text("← newer").click()
    expect(page.locator(".pager")).to_contain_text("page 1 of 2")
    assert row_ids(page)[0] == "R0129"


def test_pages_of_any_offered_size(server: Server, page: Any) -> None:
    write(server, many_runs(130))
    page.goto(server.url + "/")
    page.locator("#per-page").select_option("25")
    expect(page.locator("#runs tr.run")).to_have_count(25)
    expect(page.locator("#pager")).to_contain_text("page 1 of 6")
    page.locator("#pager a[rel=next]").click()
    expect(page.locator("#pager")).to_contain_text("page 2 of 6")
    assert row_ids(page)[0] == "R0104"
    page.reload()
    expect(page.locator("#pager")).to_contain_text("page 2 of 6")
    expect(page.locator("#per-page")).to_have_value("25")


def test_status_chips_filter_and_the_failure_headline_shows(server: Server, page: Any) -> None:
    write(server, completed_run("OK-1") + failed_run("BAD-1", T0 + 5000) + saga_run("SAGA-1", T0 + 9000))
    page.goto(server.url + "/")
    chips = page.locator("#status-chips")
    expect(chips.locator('[data-chip=""]')).to_contain_text("all 3")
    expect(chips.locator('[data-chip="failed"]')).to_contain_text("failed 1")
    chips.locator('[data-chip="failed"]').click()
    expect(page.locator("#runs tr.run")).to_have_count(1)
    row = page.locator('tr[data-run-id="BAD-1"]')
    expect(row.locator(".failed-step")).to_contain_text("payment")
    expect(row.locator(".failed-step")).to_contain_text("attempt 2 of 2")
    expect(row.locator(".error")).to_contain_text("CardError: card declined")
    expect(row.locator(".retried")).to_contain_text("1")
    expect(page).to_have_url(re.compile(r"status=failed"))
    page.locator('#status-chips [data-chip=""]').click()
    expect(page.locator("#runs tr.run")).to_have_count(3)
    saga = page.locator('tr[data-run-id="SAGA-1"] .error')
    expect(saga).to_contain_text("undone: payment")


def test_search_finds_error_text_and_input_values(server: Server, page: Any) -> None:
    write(server, completed_run("OK-1") + failed_run("BAD-1", T0 + 5000))
    page.goto(server.url + "/")
    page.locator("#q").fill("grace hopper")
    expect(page.locator("#runs tr.run")).to_have_count(1)
    assert row_ids(page) == ["BAD-1"]
    page.locator("#q").fill("declined")
    expect(page.locator('tr[data-run-id="BAD-1"]')).to_have_count(1)
    expect(page.locator("#runs tr.run")).to_have_count(1)
    page.locator("#q").fill("workflowName")  # a key of every line, not a value
    expect(page.locator("#runs")).to_contain_text("No run matches")


def test_times_toggle_between_relative_local_and_utc_and_are_remembered(server: Server, page: Any) -> None:
    write(server, completed_run("OK-1"))
    page.goto(server.url + "/")
    cell = page.locator('tr[data-run-id="OK-1"] time.t')
    button = page.locator("#time-mode")
    expect(button).to_have_text("times: relative")
    expect(cell).to_have_text(re.compile(r"ago$"))
    button.click()
    expect(button).to_have_text("times: local")
    expect(cell).to_have_text(re.compile(r"^2026-01-01 \d\d:\d\d:\d\d$"))
    button.click()
    expect(cell).to_have_text("2026-01-01 00:00:00.010Z")
    page.reload()
    expect(page.locator("#time-mode")).to_have_text("times: UTC")
    expect(page.locator('tr[data-run-id="OK-1"] time.t')).to_have_text("2026-01-01 00:00:00.010Z")


def test_keys_search_move_open_and_list(server: Server, page: Any) -> None:
    write(server, many_runs(3))
    page.goto(server.url + "/")
    expect(page.locator("#runs tr.run")).to_have_count(3)
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#q")).not_to_be_focused()
    page.keyboard.press("j")
    expect(page.locator("tr.run.kb-selected")).to_have_attribute("data-run-id", "R0002")
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    expect(page.locator("tr.run.kb-selected")).to_have_attribute("data-run-id", "R0000")
    page.keyboard.press("k")
    expect(page.locator("tr.run.kb-selected")).to_have_attribute("data-run-id", "R0001")
    page.keyboard.press("?")
    keys = page.locator("#keys")
    expect(keys).to_be_visible()
    for text in ("search runs", "next / previous step", "replay"):
        expect(keys).to_contain_text(text)
    page.keyboard.press("Escape")
    expect(keys).to_be_hidden()
    page.keyboard.press("Enter")
    expect(page).to_have_url(server.url + "/runs/R0001")


def test_a_phone_wide_runs_page_does_not_scroll_sideways(server: Server, phone: Any) -> None:
    hostile = RunWriter("<b>" + "y" * 80, "workflow-with-a-" + "very-" * 12 + "long-name")
    events = saga_run(LONG_ID) + failed_run("BAD-" + "z" * 60, T0 + 5000)
    events += [hostile.start({"k": "v" * 300}), hostile.fail("e" * 500, "E" * 120)]
    write(server, events)
    phone.goto(server.url + "/")
    expect(phone.locator("#runs tr.run")).to_have_count(3)
    sizes = phone.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.body.scrollWidth]"
    )
    assert sizes[0] <= sizes[1] and sizes[2] <= sizes[1], sizes
    # The long id wraps only after a separator: each visual line ends with one, or the id ends.
    lines = phone.locator(f'tr[data-run-id="{LONG_ID}"] td.id a').evaluate(
        """a => { const r = document.createRange(); const out = []; let top = null, cur = "";
        for (const node of a.childNodes) { if (node.nodeType !== 3) continue;
          for (let i = 0; i < node.length; i++) { r.setStart(node, i); r.setEnd(node, i + 1);
            const t = Math.round(r.getBoundingClientRect().top);
            if (top !== null && t !== top) { out.push(cur); cur = ""; } top = t; cur += node.data[i]; } }
        out.push(cur); return out; }"""
    )
    assert "".join(lines) == LONG_ID
    assert all(line[-1] in "-_/" for line in lines[:-1]), lines


def test_the_live_mark_says_disconnected_when_the_stream_drops(server: Server, page: Any) -> None:
    write(server, completed_run("OK-1"))
    page.goto(server.url + "/")
    live = page.locator("#live")
    expect(live).to_have_text("live")
    server.stop()
    expect(live).to_contain_text("disconnected")
    expect(live).to_have_class(re.compile(r"\boff\b"))


def test_a_live_change_replaces_only_the_rows_that_changed(server: Server, page: Any) -> None:
    events = many_runs(5)
    w = RunWriter("LIVE", t0=T0 + 60_000)
    write(server, [*events, w.start(), w.step_start("fetch")])
    page.goto(server.url + "/")
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate(
        "() => document.querySelectorAll('#runs tr.run').forEach(r => { r.__kept = r.dataset.runId; })"
    )
    with open(server.trace, "ab") as f:
        f.write(
            ndjson([w.complete("fetch", 1), w.step_start("payment"), w.complete("payment", 2), w.finish()])
        )
    expect(page.locator('tr[data-run-id="LIVE"]')).to_have_attribute("data-status", "completed")
    kept = page.evaluate(
        "() => Array.from(document.querySelectorAll('#runs tr.run')).map(r => r.__kept || null)"
    )
    assert kept == [None, "R0004", "R0003", "R0002", "R0001", "R0000"]
    expect(page.locator("#status-chips")).to_contain_text("completed 6")
