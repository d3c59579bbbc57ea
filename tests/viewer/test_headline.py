"""A failed run's headline: the failed step, its attempt of how many, the error, and the undo."""

from __future__ import annotations

from typing import Any

from tests.viewer.factory import RunWriter, completed_run, saga_run
from tests.viewer.test_statuses import cancelled_run
from viewer.headline import Headline, Undo, headline
from viewer.timeline import fold_run

HOTEL_STEPS = (("flight", False), ("hotel", False), ("car", False))


def head(events: list[dict[str, Any]], run_id: str = "R") -> Headline | None:
    return headline(fold_run(run_id, events))


def retried_to_death() -> list[dict[str, Any]]:
    w = RunWriter("R")
    events = [w.start(), w.step_start("fetch"), w.complete("fetch", 1)]
    for n in (1, 2, 3):
        events.append(w.step_start("payment", attempt=n, max_retries=2))
        if n < 3:
            events.append(w.retry("payment", n, "gateway timeout", "TimeoutError"))
    events += [w.step_error("payment", "gateway timeout", "TimeoutError", attempt=3)]
    events += [w.fail("gateway timeout", "TimeoutError")]
    return events


def rollback_failed() -> list[dict[str, Any]]:
    """The car fails; the hotel cannot be undone, the flight is."""
    w = RunWriter("T", "trip", steps=HOTEL_STEPS)
    return [
        w.start(),
        w.step_start("flight"),
        w.complete("flight", 1),
        w.step_start("hotel"),
        w.complete("hotel", 2),
        w.step_start("car", max_retries=0),
        w.step_error("car", "no cars left", "SoldOut"),
        w.rollback_start(),
        w.compensate_error("hotel", "booking not found", final=False),
        w.compensate_error("hotel", "booking not found", final=True, attempt=2),
        w.compensate("flight"),
        w.rollback_complete("rollback_failed"),
        w.fail("no cars left", "SoldOut", status="rollback_failed"),
    ]


def test_a_run_that_did_not_fail_has_no_headline() -> None:
    assert head(completed_run("R")) is None
    w = RunWriter("R")
    assert head([w.start(), w.step_start("fetch")]) is None
    assert head([w.start(), w.step_start("fetch"), w.retry("fetch", 1, "boom")]) is None


def test_a_step_that_ran_out_of_attempts() -> None:
    h = head(retried_to_death())
    assert h is not None
    assert (h.status, h.step, h.attempt, h.attempts) == ("failed", "payment", 3, 3)
    assert (h.error_type, h.error) == ("TimeoutError", "gateway timeout")
    assert h.undo == ()
    assert h.text == "payment failed (attempt 3 of 3): TimeoutError: gateway timeout"


def test_a_rolled_back_saga_says_what_was_undone() -> None:
    h = head(saga_run("ORD-1"), "ORD-1")
    assert h is not None
    assert (h.status, h.step, h.attempt, h.attempts) == ("rolled_back", "fulfill", 1, 1)
    assert h.undone == ("payment",) and h.not_undone == ()
    assert h.text == "fulfill failed (attempt 1 of 1): FatalError: out of stock; undone: payment"


def test_a_failed_rollback_says_what_could_not_be_undone() -> None:
    h = head(rollback_failed(), "T")
    assert h is not None
    assert (h.status, h.step, h.error_type, h.error) == ("rollback_failed", "car", "SoldOut", "no cars left")
    assert h.undo == (Undo("hotel", False, "booking not found", "RuntimeError"), Undo("flight", True))
    assert h.undone == ("flight",)
    assert "failed to undo: hotel (RuntimeError)" in h.text
    assert "undone: flight" in h.text


def test_a_cancelled_run() -> None:
    h = head(cancelled_run(), "C-1")
    assert h is not None
    assert h.status == "cancelled" and h.step == "cool"
    assert h.text.startswith("cool cancelled")


def test_a_run_that_failed_outside_any_step() -> None:
    w = RunWriter("R")
    h = head([w.start(), w.fail("bad input", "ValidationError")])
    assert h is not None
    assert (h.step, h.attempt, h.attempts) == (None, None, None)
    assert h.text == "run failed: ValidationError: bad input"


def test_the_typescript_vocabulary_fails_on_its_step_error() -> None:
    w = RunWriter("R", gravito=True)
    h = head([w.start(), w.step_start("fetch"), w.step_error("fetch", "nope")])
    assert h is not None
    assert (h.status, h.step, h.error) == ("failed", "fetch", "nope")
    assert h.attempt == 1 and h.attempts is None
    assert h.text == "fetch failed (attempt 1): nope"


def test_hostile_text_is_kept_as_text() -> None:
    w = RunWriter("R")
    evil = "\x00\x1b[31m<script>\ud800"
    h = head([w.start(), w.step_start("fetch"), w.step_error("fetch", evil, evil), w.fail(evil, evil)])
    assert h is not None and h.error == evil and h.error_type == evil
