"""The run page as the server renders it (TestClient): header, replay in the URL,
values, stacks, the signal command, and issue 10's sleeps, timeouts, schedules,
deadlines and cancellations."""

from __future__ import annotations

import html
import re
import time

from flux.events import EventType as E
from tests.viewer.conftest import Viewer
from tests.viewer.runpage_events import T0, Run, retried_by_retry_step, saga_that_fails_to_undo


def _text(page: str, element_id: str) -> str:
    """The text of the element with ``element_id`` (its tags dropped, spaces folded)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:p|div|dd|section|span)>', page, re.S)
    assert match, f"no #{element_id} in the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


def test_the_header_duration_is_its_own_end_minus_its_start(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    page = viewer.text("/runs/INV-1")
    # 5.30 s from the first event to the last, although the engine timed 100 ms
    assert _text(page, "run-duration") == "5.30 s"


def test_a_running_runs_duration_ticks(viewer: Viewer) -> None:
    r = Run("R-1", ("a", "b"))
    r.at(0).start().at(0).begin("a")
    viewer.write(r.events)
    page = viewer.text("/runs/R-1")
    assert f'data-tick-since="{T0}"' in page


def test_a_rollback_failed_run_shows_what_failed_to_undo(viewer: Viewer) -> None:
    viewer.write(saga_that_fails_to_undo().events)
    page = viewer.text("/runs/TRIP-9")
    undo = _text(page, "undo-failed")
    assert "hotel" in undo and "HotelDown" in undo and "hotel API down" in undo


def test_the_steps_of_a_rolled_back_run_do_not_read_as_progress(viewer: Viewer) -> None:
    viewer.write(saga_that_fails_to_undo().events)
    steps = _text(viewer.text("/runs/TRIP-9"), "run-steps")
    assert "/" not in steps
    assert "1 failed" in steps and "1 undone" in steps and "1 failed to undo" in steps


def test_replay_moves_the_header_status_and_data(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    at_3 = viewer.text("/runs/INV-1/header?at=3")
    assert 'data-status="running"' in at_3
    assert "ada@example.com" in at_3  # the data as it stood after load
    assert "connection refused" not in at_3
    at_10 = viewer.text("/runs/INV-1/header?at=10")
    assert 'data-status="failed"' in at_10 and "connection refused" in at_10
    assert 'data-status="completed"' in viewer.text("/runs/INV-1/header")


def test_the_selected_step_and_replay_position_come_from_the_url(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    page = viewer.text("/runs/INV-1?step=send&at=8")
    assert re.search(r'id="replay-slider"[^>]*value="8"', page)
    assert 'class="detail" data-step="send"' in page
    assert 'data-status="running"' in page  # the header as it stood after 8 events
    assert 'data-upto="8"' in page


def test_the_stack_shows_innermost_frame_first_with_file_and_line(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    detail = viewer.text("/runs/INV-1/step?step=send&at=10")
    frames = re.findall(r'<li class="frame">(.*?)</li>', detail, re.S)
    assert frames, detail
    first = " ".join(re.sub(r"<[^>]+>", " ", frames[0]).split())
    assert "/app/smtp.py:12" in first and "connect" in first
    assert "/app/mail.py:88" in " ".join(re.sub(r"<[^>]+>", " ", frames[1]).split())


def test_values_read_as_python(viewer: Viewer) -> None:
    r = Run("TRIP-1", ("quote",))
    trip = {
        "__flux_type__": "dataclass",
        "class": "examples.travel_booking:TripRequest",
        "value": {"traveler": "Grace Hopper", "budget": {"__flux_type__": "decimal", "value": "99.80"}},
    }
    r.at(0).start(trip).at(0).begin("quote")
    when = {"__flux_type__": "datetime", "value": "2026-12-02T09:30:00+00:00"}
    r.at(10).done("quote", 10, {"at": when, "raw": {"__flux_type__": "bytes", "value": "AAEC"}})
    viewer.write(r.events)
    page = html.unescape(viewer.text("/runs/TRIP-1?step=quote"))
    assert "__flux_type__" not in page
    assert "TripRequest(traveler='Grace Hopper', budget=Decimal('99.80'))" in page  # the copy text
    assert "datetime(2026, 12, 2, 9, 30, tzinfo=timezone.utc)" in page
    assert "b'\\x00\\x01\\x02'" in page
    assert page.count('class="copy"') >= 3


def test_ids_are_copyable(viewer: Viewer) -> None:
    r = Run("ORD-77", ("a",))
    viewer.write(r.at(0).start().events)
    assert 'data-copy="ORD-77"' in viewer.text("/runs/ORD-77")


def test_hostile_strings_never_become_markup(viewer: Viewer) -> None:
    evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>\x00\x1b[31m\ud800"
    r = Run("EVIL-1", ("a",))
    r.at(0).start({evil: evil, "nested": [{"k": evil}]}).at(0).begin("a")
    r.at(5).retry("a", 1, 5, evil, stack=[{"file": evil, "line": evil, "function": evil}])
    r.at(6).begin("a", 2).at(7).suspend("a", evil)
    viewer.write(r.events)
    for url in ("/runs/EVIL-1?step=a", "/runs/EVIL-1/step?step=a", "/runs/EVIL-1/timeline"):
        page = viewer.text(url)
        assert "<script>" not in page and "<img" not in page, url
        assert "\x00" not in page and "\x1b" not in page, url


def test_a_suspended_step_shows_the_command_that_sends_its_signal(viewer: Viewer) -> None:
    r = Run("EXP-3", ("submit", "approve"), workflow="expense")
    r.at(0).start().at(0).begin("submit").at(5).done("submit", 5).at(5).begin("approve")
    r.at(6).suspend("approve", "approval")
    viewer.write(r.events)
    detail = html.unescape(viewer.text("/runs/EXP-3/step?step=approve"))
    command = (
        "flux runs signal EXP-3 approval --payload 'null' --storage STORAGE_URL --workflow MODULE:ATTRIBUTE "
        f"--trace {viewer.trace}"
    )
    assert command in detail


def test_the_signal_command_quotes_what_a_shell_would_read(viewer: Viewer) -> None:
    r = Run("EXP 4;rm", ("approve",), workflow="expense")
    r.at(0).start().at(0).begin("approve").at(1).suspend("approve", "ok$(x)")
    viewer.write(r.events)
    detail = html.unescape(viewer.text("/runs/EXP%204%3Brm/step?step=approve"))
    assert "flux runs signal 'EXP 4;rm' 'ok$(x)' " in detail


# -- issue 10: durable time -------------------------------------------------------------


def test_a_sleep_is_drawn_until_its_wake_time_with_the_time_left(viewer: Viewer) -> None:
    # a run that is sleeping now: the time left is counted from the wall clock
    t0 = int(time.time() * 1000) - 31
    r = Run("TRIAL-1", ("welcome", "cool_off", "remind"), t0=t0)
    r.at(0).start().at(0).begin("welcome").at(30).done("welcome", 30).at(30).begin("cool_off")
    r.at(31).ev(E.STEP_SLEEP, **r._step("cool_off"), wakeAt=t0 + 3_600_031)
    viewer.write(r.events)
    timeline = viewer.text("/runs/TRIAL-1/timeline")
    assert re.search(r'class="bar wait sleep[^"]*"', timeline)
    assert f'data-countdown="{t0 + 3_600_031}"' in timeline
    assert re.search(r"sleep · (59|60) min left", timeline)
    assert "1 h" in timeline  # drawn up to its wake time: the axis reaches it
    r.at(3_600_031).ev(E.STEP_WAKE, **r._step("cool_off"))
    r.at(3_600_032).done("cool_off", 0.5)
    viewer.append(r.events[-2:])
    timeline = viewer.text("/runs/TRIAL-1/timeline")
    assert "data-countdown" not in timeline


def test_a_wait_with_a_timeout_shows_the_timeout_and_then_that_it_timed_out(viewer: Viewer) -> None:
    r = Run("TRIAL-2", ("upgrade",))
    r.at(0).start().at(0).begin("upgrade").at(1).suspend("upgrade", "upgraded", wakeAt=T0 + 86_400_001)
    viewer.write(r.events)
    detail = viewer.text("/runs/TRIAL-2/step?step=upgrade")
    assert "times out" in detail and "2026-12-01" in detail
    r.at(86_400_001).ev(
        E.SIGNAL_TIMEOUT, **r._step("upgrade"), signal="upgraded", wakeAt=T0 + 86_400_001,
        error="no signal 'upgraded' within 86400 s", errorType="SignalTimeoutError",
    )  # fmt: skip
    viewer.append(r.events[-1:])
    timeline = viewer.text("/runs/TRIAL-2/timeline")
    assert re.search(r'class="bar wait[^"]* timed-out', timeline)
    assert "timed out" in viewer.text("/runs/TRIAL-2/step?step=upgrade")


def test_a_scheduled_run_shows_its_schedule_and_slot_and_a_deadline(viewer: Viewer) -> None:
    r = Run("nightly@2026-12-02T01:00:00Z", ("report",))
    r.at(0).start(schedule={"id": "nightly", "slot": "2026-12-02T01:00:00Z"}, deadline=T0 + 3_600_000)
    viewer.write(r.events)
    page = viewer.text("/runs/nightly%402026-12-02T01%3A00%3A00Z")
    schedule = _text(page, "run-schedule")
    assert "nightly" in schedule and "2026-12-02T01:00:00Z" in schedule
    assert "2026-11-30" in _text(page, "run-deadline")


def test_a_cancelled_run_and_a_deadline_exceeded_run_say_so(viewer: Viewer) -> None:
    r = Run("C-1", ("a",))
    r.at(0).start().at(0).begin("a").at(5).ev(E.WORKFLOW_CANCEL, reason="customer asked")
    r.fail("cancelled", "customer asked", "CancelledError")
    d = Run("D-1", ("a",))
    d.at(0).start(deadline=T0 + 5).at(0).begin("a").at(5).ev(E.WORKFLOW_CANCEL, reason="deadline passed")
    d.fail("cancelled", "run D-1 passed its deadline", "DeadlineExceededError")
    viewer.write(r.events + d.events)
    cancelled = viewer.text("/runs/C-1")
    assert 'data-status="cancelled"' in cancelled
    assert "customer asked" in _text(cancelled, "run-error")
    exceeded = viewer.text("/runs/D-1")
    assert "deadline exceeded" in _text(exceeded, "run-error").lower()


def test_the_failure_headline_comes_first_and_links_each_part_to_its_row(viewer: Viewer) -> None:
    viewer.write(saga_that_fails_to_undo().events)
    page = viewer.text("/runs/TRIP-9")
    head = page[page.index('id="run-headline"') :]
    head = head[: head.index("</div>")]
    assert page.index('id="run-headline"') < page.index('class="io"') < page.index('id="timeline"')
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", head)).split())
    assert "payment failed on attempt 1" in text and "FatalError : card declined" in text
    assert "Undone: flight" in text and "Failed to undo: hotel — HotelDown : hotel API down" in text
    links = re.findall(r'data-goto-step="([^"]+)"', head)
    assert links == ["payment", "flight", "hotel"]
