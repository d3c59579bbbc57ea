"""The run page in a real Chromium on a real ``flux dev``: keys, the address, replay that
moves the header, clocks that tick, copy buttons, the dark theme, a phone's width.

Every wait is on something in the page (Playwright's auto-waiting ``expect``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flux.events import EventType as E
from tests.e2e.conftest import DEADLINE_S, Server
from tests.viewer.runpage_events import Run, retried_by_retry_step

pytestmark = pytest.mark.browser


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def write(server: Server, *runs: Run) -> None:
    server.trace.parent.mkdir(parents=True, exist_ok=True)
    with open(server.trace, "a", encoding="utf-8") as f:
        for run in runs:
            f.writelines(json.dumps(ev) + "\n" for ev in run.events)


@pytest.fixture
def context_of(browser: Any) -> Iterator[Any]:
    """A browser context of the test's choosing (viewport, colour scheme, permissions)."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        ctx = browser.new_context(**options)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


def new_page(ctx: Any) -> Any:
    page = ctx.new_page()
    page.set_default_timeout(DEADLINE_S * 1000)
    return page


def test_keys_move_between_steps_and_through_the_replay(server: Server, page: Any) -> None:
    write(server, retried_by_retry_step())
    page.goto(server.url + "/runs/INV-1")
    detail = page.locator("#step-detail .detail")
    page.keyboard.press("j")
    expect(detail).to_have_attribute("data-step", "load")
    expect(page.locator('#timeline .trow.step.selected[data-step="load"]')).to_have_count(1)
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    expect(detail).to_have_attribute("data-step", "archive")
    page.keyboard.press("k")
    expect(detail).to_have_attribute("data-step", "send")

    timeline = page.locator("#timeline .timeline")
    expect(timeline).to_have_attribute("data-upto", "16")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(timeline).to_have_attribute("data-upto", "14")
    page.keyboard.press("ArrowRight")
    expect(timeline).to_have_attribute("data-upto", "15")


def test_the_address_keeps_the_step_and_the_replay_position(server: Server, page: Any) -> None:
    write(server, retried_by_retry_step())
    page.goto(server.url + "/runs/INV-1")
    page.locator('a[data-step-select="load"]').click()
    expect(page.locator("#step-detail .detail")).to_have_attribute("data-step", "load")
    page.locator('a[data-step-select="send"]').click()
    expect(page.locator("#step-detail .detail")).to_have_attribute("data-step", "send")
    page.locator("#replay-slider").fill("8")
    expect(page.locator("#timeline .timeline")).to_have_attribute("data-upto", "8")
    page.wait_for_url("**/runs/INV-1?step=send&at=8")

    page.reload()
    expect(page.locator("#step-detail .detail")).to_have_attribute("data-step", "send")
    expect(page.locator("#timeline .timeline")).to_have_attribute("data-upto", "8")
    expect(page.locator("#replay-slider")).to_have_value("8")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "running")

    page.go_back()  # to the step selected before
    page.wait_for_url("**/runs/INV-1?step=load")
    expect(page.locator("#step-detail .detail")).to_have_attribute("data-step", "load")
    expect(page.locator("#timeline .timeline")).to_have_attribute("data-upto", "16")


def test_replay_moves_the_header_status_data_and_error(server: Server, page: Any) -> None:
    write(server, retried_by_retry_step())
    page.goto(server.url + "/runs/INV-1")
    status = page.locator("#run-status")
    expect(status).to_have_attribute("data-status", "completed")
    page.locator("#replay-slider").fill("10")
    expect(status).to_have_attribute("data-status", "failed")
    expect(page.locator("#run-headline")).to_contain_text("connection refused")
    page.locator("#replay-slider").fill("3")
    expect(status).to_have_attribute("data-status", "running")
    expect(page.locator("#run-headline")).to_have_count(0)
    expect(page.locator("#run-header .io")).to_contain_text("Data as of event 3")
    page.locator("#replay-live").click()
    expect(status).to_have_attribute("data-status", "completed")
    expect(page.locator("#run-header .io")).to_contain_text("Final data")


def test_a_running_runs_duration_and_a_sleeps_time_left_tick(server: Server, page: Any) -> None:
    t0 = int(time.time() * 1000) - 2_000
    r = Run("TICK-1", ("a", "nap"), t0=t0)
    r.at(0).start().at(0).begin("a").at(10).done("a", 10).at(10).begin("nap")
    r.at(11).ev(E.STEP_SLEEP, **r._step("nap"), wakeAt=t0 + 60_000)  # in about a minute
    write(server, r)
    page.goto(server.url + "/runs/TICK-1")
    duration = page.locator("#run-duration")
    expect(duration).to_have_attribute("data-tick-since", str(t0))
    first = duration.inner_text()
    expect(duration).not_to_have_text(first)  # a second later
    label = page.locator("#timeline .bar.sleep[data-countdown] .lbl")
    shown = label.inner_text()
    assert shown.startswith("sleep · ") and shown.endswith(" s left"), shown
    expect(label).not_to_have_text(shown)


def test_copy_buttons_copy_the_value_as_python(server: Server, context_of: Any) -> None:
    r = Run("COPY-1", ("quote",))
    r.at(0).start({"budget": {"__flux_type__": "decimal", "value": "99.80"}})
    write(server, r)
    ctx = context_of(viewport={"width": 1400, "height": 900})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = new_page(ctx)
    page.goto(server.url + "/runs/COPY-1")
    page.locator("#run-header .io .value > button.copy").first.click()
    expect(page.locator("#run-header .io .value > button.copy").first).to_have_text("copied")
    assert page.evaluate("navigator.clipboard.readText()") == "{'budget': Decimal('99.80')}"
    page.locator("#run-header h1 button.copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == "COPY-1"


def _luminance(rgb: str) -> float:
    parts = [float(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    return (0.2126 * parts[0] + 0.7152 * parts[1] + 0.0722 * parts[2]) / 255.0


def test_the_theme_follows_the_system_setting(server: Server, context_of: Any) -> None:
    write(server, retried_by_retry_step())
    backgrounds = {}
    for scheme in ("light", "dark"):
        page = new_page(context_of(viewport={"width": 1400, "height": 900}, color_scheme=scheme))
        page.goto(server.url + "/runs/INV-1")
        expect(page.locator("#run-status")).to_be_visible()
        backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        ink = page.evaluate("getComputedStyle(document.body).color")
        panel = page.evaluate("getComputedStyle(document.getElementById('timeline')).backgroundColor")
        assert abs(_luminance(ink) - _luminance(panel)) > 0.5, (scheme, ink, panel)  # readable either way
    assert _luminance(backgrounds["light"]) > 0.8 and _luminance(backgrounds["dark"]) < 0.2


def test_the_run_page_stacks_at_a_phones_width(server: Server, context_of: Any) -> None:
    write(server, retried_by_retry_step())
    page = new_page(context_of(viewport={"width": 390, "height": 844}))
    page.goto(server.url + "/runs/INV-1?step=send")
    expect(page.locator("#step-detail .detail")).to_be_visible()
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], width  # no horizontal scroll
    track = page.locator('#timeline .trow.step[data-step="send"] .track').bounding_box()
    assert track is not None and track["width"] >= 300, track  # the timeline gets the width
    timeline = page.locator("#timeline").bounding_box()
    detail = page.locator("#step-detail").bounding_box()
    assert timeline and detail and detail["y"] >= timeline["y"] + timeline["height"]  # stacked


def test_the_failure_is_linked_to_its_row(server: Server, page: Any, tmp_path: Path) -> None:
    write(server, retried_by_retry_step())
    page.goto(server.url + "/runs/INV-1?at=10")
    page.locator("#run-headline a[data-goto-step]").first.click()
    expect(page.locator("#step-detail .detail")).to_have_attribute("data-step", "send")
    expect(page.locator("#step-detail .stack li.frame").first).to_contain_text("/app/smtp.py:12")


def test_compressing_idle_time_is_a_toggle_kept_in_the_address(server: Server, page: Any) -> None:
    r = Run("IDLE-1", ("a", "wait", "b"))
    r.at(0).start().at(0).begin("a").at(80).done("a", 80).at(80).begin("wait").at(81).suspend("wait", "go")
    r.at(3_600_081).signal("wait", "go").at(3_600_081).begin("b").at(3_600_181).done("b", 100)
    r.complete(3_600_181)
    write(server, r)
    page.goto(server.url + "/runs/IDLE-1")
    expect(page.locator("#timeline .axis-break")).to_have_count(0)
    page.locator("#idle-toggle").check()
    expect(page.locator("#timeline .axis-break")).to_have_count(1)
    expect(page.locator("#timeline .axis-break")).to_contain_text("1 h")
    page.wait_for_url("**/runs/IDLE-1?idle=compress")
    page.reload()
    expect(page.locator("#idle-toggle")).to_be_checked()
    expect(page.locator("#timeline .axis-break")).to_have_count(1)


def test_a_change_to_the_run_redraws_the_page_in_one_request(server: Server, page: Any) -> None:
    r = Run("LIVE-1", ("a", "b"))
    r.at(0).start().at(0).begin("a")
    write(server, r)
    page.goto(server.url + "/runs/LIVE-1")
    status = page.locator("#run-status")
    expect(status).to_have_attribute("data-status", "running")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/runs/LIVE-1" in request.url else None)
    more = Run("LIVE-1", ("a", "b"))
    more.events = []
    more.at(10).done("a", 10).at(10).begin("b").at(20).done("b", 10).at(20).complete(20)
    for seq, ev in enumerate(more.events, start=len(r.events) + 1):
        ev["seq"] = seq
    write(server, more)
    expect(status).to_have_attribute("data-status", "completed")  # header
    expect(page.locator("#timeline .trow.step[data-step='b']")).to_have_count(1)  # timeline
    # however many events the change brought, each redraw was one request for all three parts
    assert asked and all(url.split("?")[0].endswith("/runs/LIVE-1/live") for url in asked), asked
