"""Folding one run's events into the run page's view, and replaying them."""

from __future__ import annotations

from tests.viewer.factory import SAGA_STEPS, RunWriter, saga_run
from viewer.timeline import fold_run, order_events


def test_the_saga_run_has_every_kind_of_row() -> None:
    view = fold_run("ORD-1", saga_run("ORD-1"))
    assert view.status == "rolled_back"
    assert [row.name for row in view.steps] == [name for name, _ in SAGA_STEPS]
    rows = {row.name: row for row in view.steps}

    payment = rows["payment"]
    assert [a.outcome for a in payment.attempts] == ["retry", "ok"]
    assert payment.attempts[0].error == "gateway timeout"
    assert payment.attempts[0].error_type == "TimeoutError"
    assert payment.status == "compensated"

    assert rows["auto"].status == "skipped" and rows["auto"].attempts == []
    approve = rows["approve"]
    assert approve.wait is not None and approve.wait.signal == "approval"
    assert approve.wait.end is not None and approve.output == {"by": "ann"}

    fulfill = rows["fulfill"]
    assert fulfill.commit and fulfill.status == "failed"
    assert (fulfill.error_type, fulfill.error) == ("FatalError", "out of stock")

    assert [c.name for c in view.compensations] == ["payment"]
    assert view.compensations[0].status == "compensated"
    assert view.has_input and view.input == {"order_id": "ORD-1"}
    assert view.has_data and view.data == {"paid": True}


def test_rows_follow_the_definition_not_the_order_of_appearance() -> None:
    w = RunWriter("R", steps=(("a", False), ("b", False), ("c", False)))
    view = fold_run("R", [w.start(), w.step_start("b"), w.step_start("c")])
    assert [row.name for row in view.steps] == ["a", "b", "c"]
    assert view.steps[0].status == "pending"


def test_without_a_definition_rows_come_in_order_of_appearance() -> None:
    w = RunWriter("R", steps=(("a", False), ("b", False)), gravito=True)
    view = fold_run("R", [w.start(), w.step_start("b"), w.step_start("a")])
    assert [row.name for row in view.steps] == ["b", "a"]


def test_data_changes_are_diffed_against_the_previous_step() -> None:
    w = RunWriter("R", steps=(("a", False), ("b", False)))
    events = [
        w.start(),
        w.step_start("a"),
        w.complete("a", None, {"order": {"id": 1, "items": 2}, "gone": True}),
        w.step_start("b"),
        w.complete("b", None, {"order": {"id": 1, "items": 3}, "paid": True}),
    ]
    rows = {row.name: row for row in fold_run("R", events).steps}
    assert [(c.path, c.kind) for c in rows["a"].changes or []] == [
        ("data.order", "added"),
        ("data.gone", "added"),
    ]
    changes = {c.path: c for c in rows["b"].changes or []}
    assert changes["data.order.items"].old == 2 and changes["data.order.items"].new == 3
    assert changes["data.paid"].kind == "added" and changes["data.gone"].kind == "removed"


def test_replay_shows_the_run_as_it_stood_after_event_k() -> None:
    events = saga_run("R")
    assert fold_run("R", events, 0).steps == [] and fold_run("R", events, 0).upto == 0
    after_retry = fold_run("R", events, 5)
    payment = after_retry.step("payment")
    assert payment is not None and [a.outcome for a in payment.attempts] == ["retry"]
    assert after_retry.status == "running" and after_retry.last_event == events[4]
    waiting = fold_run("R", events, 10)
    assert waiting.status == "suspended" and waiting.waiting_for == "approval"
    approve = waiting.step("approve")
    assert approve is not None and approve.wait is not None and approve.wait.end is None
    assert fold_run("R", events, 999).upto == len(events)


def test_gravito_retries_open_the_next_attempt_themselves() -> None:
    w = RunWriter("G", steps=(("a", False),), gravito=True)
    events = [w.start(), w.step_start("a"), w.retry("a", 1, "boom"), w.retry("a", 2, "boom"), w.complete("a")]
    row = fold_run("G", events).steps[0]
    assert [a.outcome for a in row.attempts] == ["retry", "retry", "ok"]
    assert [a.number for a in row.attempts] == [1, 2, 3]


def test_flux_retries_wait_for_the_next_step_start() -> None:
    w = RunWriter("R", steps=(("a", False),))
    events = [w.start(), w.step_start("a"), w.retry("a", 1, "boom")]
    row = fold_run("R", events).steps[0]
    assert [a.outcome for a in row.attempts] == ["retry"] and row.status == "retrying"
    row = fold_run("R", [*events, w.step_start("a", attempt=2)]).steps[0]
    assert [(a.number, a.outcome) for a in row.attempts] == [(1, "retry"), (2, "running")]


def test_a_step_skipped_after_a_gravito_start_has_no_attempt() -> None:
    w = RunWriter("G", steps=(("a", False),), gravito=True)
    row = fold_run("G", [w.start(), w.step_start("a"), w.skipped("a")]).steps[0]
    assert row.status == "skipped" and row.attempts == []


def test_a_failed_compensation_gets_its_own_failed_row() -> None:
    w = RunWriter("R", steps=(("a", False), ("b", False), ("c", False)))
    events = [
        w.start(),
        w.step_start("a"),
        w.complete("a"),
        w.step_start("b"),
        w.complete("b"),
        w.step_start("c"),
        w.step_error("c", "no"),
        w.rollback_start(),
        w.compensate_error("b", "refund failed", final=False),
        w.compensate_error("b", "refund failed", final=True, attempt=2),
        w.compensate("a"),
        w.rollback_complete("rollback_failed"),
        w.fail("no", status="rollback_failed"),
    ]
    view = fold_run("R", events)
    assert view.status == "rollback_failed"
    assert [(c.name, c.status) for c in view.compensations] == [
        ("b", "compensation_failed"),
        ("a", "compensated"),
    ]
    assert [a.outcome for a in view.compensations[0].attempts] == ["retry", "error"]
    assert view.step("b") is not None and view.step("b").status == "compensation_failed"  # type: ignore[union-attr]


def test_a_crashed_attempt_is_marked_lost_when_the_step_starts_again() -> None:
    w = RunWriter("R", steps=(("a", False),))
    events = [w.start(), w.step_start("a"), w.resume("a", "recover"), w.step_start("a"), w.complete("a")]
    row = fold_run("R", events).steps[0]
    assert [a.outcome for a in row.attempts] == ["lost", "ok"]


def test_events_are_ordered_by_seq_when_all_have_one() -> None:
    w = RunWriter("R")
    a, b, c = w.start(), w.step_start("fetch"), w.complete("fetch")
    assert order_events([a, c, b]) == [a, b, c]
    del b["seq"]
    assert order_events([a, c, b]) == [a, c, b]  # file order otherwise


def test_unknown_event_types_count_for_replay_but_change_nothing() -> None:
    w = RunWriter("R")
    events = [w.start(), w.event("step:telemetry", stepName="fetch"), w.event("", foo=1)]
    view = fold_run("R", events)
    assert view.total == 3 and view.steps[0].attempts == [] and view.status == "running"


def test_hostile_values_of_the_wrong_type_do_not_break_the_fold() -> None:
    w = RunWriter("R")
    events = [
        w.event("workflow:start", meta={"steps": ["x", {"name": 3}, {"name": "ok"}]}),
        w.event("step:start", stepName=None, stepIndex="zero", attempt="one", timestamp="soon"),
        w.event("step:retry", stepName=["a"], error={"nested": True}, duration="long"),
        w.event("workflow:error", status="exploded", error=None),
    ]
    view = fold_run("R", events)
    assert view.status == "failed"
    assert view.steps[0].name == "ok"
