"""A real server, a real Chromium, and another process appending to the trace.

Every wait is on something in the page (Playwright's auto-waiting ``expect``);
the only deadline is the one to fail on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, DEADLINE_S, Server, fake_engine

pytestmark = pytest.mark.browser


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def finish(proc: Any) -> None:
    assert proc.wait(timeout=DEADLINE_S) == 0


def test_a_new_run_appears_and_completes_live_without_reload(
    server: Server, page: Any, tmp_path: Path
) -> None:
    page.goto(server.url + "/")
    expect(page.locator("#missing-trace")).to_be_visible()
    expect(page.locator("#live")).to_have_class("live on")  # the SSE stream is open
    page.evaluate("window.__noReload = true")

    gate = tmp_path / "go"
    writer = fake_engine(server.trace, "LIVE-1", "order", gate=gate)
    row = page.locator('tr[data-run-id="LIVE-1"]')
    expect(row).to_have_attribute("data-status", "running")
    expect(row.locator(".steps")).to_have_text("1/4")
    gate.touch()
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.locator(".steps")).to_have_text("4/4")
    finish(writer)
    assert page.evaluate("window.__noReload") is True


def test_the_run_page_shows_retries_skips_waits_and_compensations(server: Server, page: Any) -> None:
    finish(fake_engine(server.trace, "SAGA-1", "saga"))
    page.goto(server.url + "/runs/SAGA-1")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "rolled_back")
    timeline = page.locator("#timeline")
    expect(
        timeline.locator('.trow[data-step="payment"]:not([data-compensation]) .bar.outcome-retry')
    ).to_have_count(1)
    expect(
        timeline.locator('.trow[data-step="payment"]:not([data-compensation]) .bar.outcome-ok')
    ).to_have_count(1)
    expect(timeline.locator('.trow[data-step="auto"][data-status="skipped"] .skip-mark')).to_be_visible()
    expect(timeline.locator('.trow[data-step="approve"] .bar.wait')).to_be_visible()
    expect(timeline.locator('.trow[data-step="fulfill"] .badge.commit')).to_be_visible()
    compensation = timeline.locator('.trow[data-compensation="1"]')
    expect(compensation).to_have_count(1)
    expect(compensation).to_have_attribute("data-step", "payment")
    expect(timeline.locator(".attempt-errors")).to_contain_text(["gateway timeout", "out of stock"])

    page.locator('a[data-step-select="payment"]').click()
    detail = page.locator("#step-detail")
    expect(detail.locator("table.attempts tbody tr")).to_have_count(2)
    expect(detail).to_contain_text("data.paid")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-page.png"), full_page=True)


def test_replay_steps_through_the_events_without_reloading(server: Server, page: Any) -> None:
    finish(fake_engine(server.trace, "SAGA-2", "saga"))
    page.goto(server.url + "/runs/SAGA-2")
    page.evaluate("window.__noReload = true")
    timeline = page.locator("#timeline .timeline")
    expect(timeline).to_have_attribute("data-upto", "17")

    slider = page.locator("#replay-slider")
    slider.fill("5")  # dispatches input, as a drag does
    expect(timeline).to_have_attribute("data-upto", "5")
    expect(page.locator("#replay-pos")).to_contain_text("step:retry")
    expect(page.locator("#timeline .skip-mark")).to_have_count(0)

    page.locator("#replay-prev").click()
    expect(timeline).to_have_attribute("data-upto", "4")
    for _ in range(4):
        page.locator("#replay-next").click()
    expect(timeline).to_have_attribute("data-upto", "8")
    expect(page.locator("#timeline .skip-mark")).to_have_count(1)

    page.locator("#replay-live").click()
    expect(timeline).to_have_attribute("data-upto", "17")
    assert page.evaluate("window.__noReload") is True


def test_an_open_run_page_follows_the_run_live(server: Server, page: Any, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    writer = fake_engine(server.trace, "LIVE-2", "order", gate=gate)
    page.goto(server.url + "/")
    page.locator('tr[data-run-id="LIVE-2"] a').click()
    expect(page.locator("#run-status")).to_have_attribute("data-status", "running")
    expect(page.locator('#timeline .trow[data-step="payment"] .bar.outcome-retry')).to_have_count(1)
    page.evaluate("window.__noReload = true")
    gate.touch()
    expect(page.locator("#run-status")).to_have_attribute("data-status", "completed")
    expect(page.locator('#timeline .trow[data-step="auto"][data-status="skipped"]')).to_have_count(1)
    expect(page.locator("#replay-slider")).to_have_attribute("max", "11")
    finish(writer)
    assert page.evaluate("window.__noReload") is True


def test_a_real_engine_run_waits_for_its_signal_then_completes(
    server: Server, page: Any, tmp_path: Path
) -> None:
    page.goto(server.url + "/")
    gate = tmp_path / "go"
    writer = fake_engine(server.trace, "ENG-1", "order", gate=gate, module="engine_writer")
    row = page.locator('tr[data-run-id="ENG-1"]')
    expect(row).to_have_attribute("data-status", "suspended")
    expect(row).to_contain_text("for approval")
    row.locator("a").click()
    expect(page.locator('#timeline .trow[data-step="approve"] .bar.wait.open')).to_be_visible()
    gate.touch()
    expect(page.locator("#run-status")).to_have_attribute("data-status", "completed")
    timeline = page.locator("#timeline")
    expect(timeline.locator('.trow[data-step="payment"] .bar.outcome-retry')).to_have_count(1)
    expect(timeline.locator('.trow[data-step="express"][data-status="skipped"]')).to_have_count(1)
    expect(timeline.locator('.trow[data-step="approve"] .bar.wait:not(.open)')).to_be_visible()
    expect(timeline.locator('.trow[data-step="ship"] .badge.commit')).to_be_visible()
    finish(writer)


def test_a_real_engine_saga_shows_its_compensation(server: Server, page: Any) -> None:
    finish(fake_engine(server.trace, "ENG-2", "saga", module="engine_writer"))
    page.goto(server.url + "/runs/ENG-2?step=payment")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "rolled_back")
    compensation = page.locator('#timeline .trow[data-compensation="1"]')
    expect(compensation).to_have_attribute("data-step", "payment")
    expect(page.locator("#step-detail")).to_contain_text("data.charge")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-page-engine.png"))


def test_a_reset_trace_starts_the_open_page_over(server: Server, page: Any) -> None:
    finish(fake_engine(server.trace, "BEFORE", "order"))
    page.goto(server.url + "/")
    expect(page.locator('tr[data-run-id="BEFORE"]')).to_have_attribute("data-status", "completed")
    page.evaluate("window.__noReload = true")
    with open(server.trace, "r+b") as f:  # what JsonFileTraceSink(reset=True) does
        f.truncate(0)
    expect(page.locator("tr[data-run-id]")).to_have_count(0)
    finish(fake_engine(server.trace, "AFTER", "order"))
    expect(page.locator("tr[data-run-id]")).to_have_count(1)
    expect(page.locator('tr[data-run-id="AFTER"]')).to_have_attribute("data-status", "completed")
    assert page.evaluate("window.__noReload") is True


def test_filters_and_search_narrow_the_list_in_place(server: Server, page: Any) -> None:
    for run_id, scenario in (("ORD-1", "order"), ("ORD-2", "saga"), ("INV-1", "order")):
        finish(fake_engine(server.trace, run_id, scenario))
    page.goto(server.url + "/")
    rows = page.locator("tr[data-run-id]")
    expect(rows).to_have_count(3)
    page.evaluate("window.__noReload = true")
    page.locator("#q").fill("ord-")  # not "ord": search reads workflow names too (order-process)
    expect(rows).to_have_count(2)
    page.locator('select[name="status"]').select_option("rolled_back")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", "ORD-2")
    assert page.url.endswith("/?status=rolled_back&q=ord-")  # the address bar follows
    assert page.evaluate("window.__noReload") is True
