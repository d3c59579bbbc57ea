"""The viewer's statuses are the engine's (`RunStatus`, `StepStatus`), and it reads the
events of SPEC §9–§12: a cancelled run, a sleeping step, a signal that timed out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import flux
from flux import (
    Backoff,
    FatalError,
    Flux,
    FluxEngine,
    MemoryTraceSink,
    RunStatus,
    StepStatus,
    create_workflow,
)
from tests.viewer.conftest import Viewer
from tests.viewer.factory import RunWriter, saga_run
from viewer import summary
from viewer.runview import RunView
from viewer.timeline import DISPLAY_ONLY, fold_run, order_events
from viewer.trace import TraceIndex

ROOT = Path(flux.__file__).resolve().parent.parent
STEPS = (("hold", False), ("cool", False), ("ask", False), ("ship", True))


def cancelled_run(run_id: str = "C-1") -> list[dict[str, Any]]:
    """A run cancelled while a step was in flight: the saga compensates the step before."""
    w = RunWriter(run_id, steps=STEPS)
    return [
        w.start(),
        w.step_start("hold"),
        w.complete("hold", 1),
        w.step_start("cool"),
        w.event("workflow:cancel", reason="customer asked"),
        w.event("step:error", stepName="cool", stepIndex=1, error="customer asked", status="cancelled"),
        w.rollback_start(),
        w.compensate("hold"),
        w.rollback_complete("cancelled"),
        w.fail("customer asked", "RunCancelledError", status="cancelled"),
    ]


def sleeping_run(run_id: str = "Z-1", *, wake: bool) -> list[dict[str, Any]]:
    w = RunWriter(run_id, steps=STEPS)
    events = [
        w.start(),
        w.step_start("hold"),
        w.complete("hold", 1),
        w.step_start("cool"),
        w.event("step:sleep", stepName="cool", stepIndex=1, wakeAt=w.now + 3_600_000, status="suspended"),
    ]
    if wake:
        events += [
            w.event("step:wake", stepName="cool", stepIndex=1),
            w.complete("cool", None),
            w.step_start("ask"),
            w.suspend("ask", "approval"),
            w.event("signal:timeout", stepName="ask", stepIndex=2, signal="approval"),
            w.step_error("ask", "no approval within 3600 s", "SignalTimeoutError"),
            w.fail("no approval within 3600 s", "SignalTimeoutError"),
        ]
    return events


def _view(events: list[dict[str, Any]]) -> RunView:
    return fold_run(events[0]["workflowId"], order_events(events))


def _summary(events: list[dict[str, Any]]) -> summary.RunSummary:
    index = TraceIndex()
    index.feed(b"".join(__import__("json").dumps(ev).encode() + b"\n" for ev in events))
    return index.runs[events[0]["workflowId"]]


def _engine_traces() -> list[list[dict[str, Any]]]:
    sink = MemoryTraceSink()
    engine = FluxEngine(trace=sink, default_backoff=Backoff(initial=0, jitter=0))

    def declined(ctx: Any) -> None:
        raise FatalError("declined")

    def flaky(ctx: Any) -> int:
        if ctx.attempt == 1:
            raise ConnectionError("blip")
        return 1

    def undo_fails(ctx: Any) -> None:
        raise FatalError("cannot undo")

    engine.execute_sync(
        create_workflow("ok").step("a", flaky, retries=1).step("b", lambda c: 1, when=lambda c: False)
    )
    engine.execute_sync(create_workflow("f").step("a", declined))
    engine.execute_sync(
        create_workflow("s").step("a", lambda c: 1, compensate=lambda c: None).step("b", declined)
    )
    engine.execute_sync(
        create_workflow("rf").step("a", lambda c: 1, compensate=undo_fails).step("b", declined)
    )
    engine.execute_sync(create_workflow("w").step("a", lambda c: Flux.wait("go")))
    runs: dict[str, list[dict[str, Any]]] = {}
    for ev in sink.events:
        runs.setdefault(ev["workflowId"], []).append(ev)
    return list(runs.values())


def test_the_viewers_run_statuses_are_run_status() -> None:
    assert list(summary.RUN_STATUSES) == [status.value for status in RunStatus]
    assert set(summary.TERMINAL_STATUSES) <= set(summary.RUN_STATUSES)
    assert set(summary.ERROR_STATUSES) <= set(summary.TERMINAL_STATUSES)
    assert "cancelled" in summary.ERROR_STATUSES


def test_every_status_the_viewer_draws_is_a_run_or_step_status() -> None:
    step_statuses = {status.value for status in StepStatus}
    assert not set(DISPLAY_ONLY) & step_statuses  # a display state is never a stored one
    traces = [
        *_engine_traces(),
        saga_run(),
        cancelled_run(),
        sleeping_run(wake=True),
        sleeping_run(wake=False),
    ]
    for events in traces:
        for upto in range(len(events) + 1):
            view = fold_run(events[0]["workflowId"], order_events(events), upto)
            assert view.status in set(summary.RUN_STATUSES), (events[0]["workflowId"], upto, view.status)
            for row in view.steps + view.compensations:
                assert row.status in step_statuses | set(DISPLAY_ONLY), (row.name, upto, row.status)
        assert _summary(events).status in summary.RUN_STATUSES


def test_every_status_has_a_colour() -> None:
    css = (ROOT / "static" / "app.css").read_text(encoding="utf-8")
    for status in RunStatus:
        assert re.search(rf"\.status-{status.value}\b", css), status
    for name in [s.value for s in StepStatus if s not in (StepStatus.PENDING, StepStatus.SKIPPED)] + list(
        DISPLAY_ONLY
    ):
        assert re.search(rf"\.st-{name}\b", css), name


def test_a_cancelled_run_is_cancelled_in_the_index_and_on_its_page() -> None:
    events = cancelled_run()
    assert _summary(events).status == "cancelled"
    assert _summary(events).error == "customer asked"
    view = _view(events)
    assert view.status == "cancelled" and view.terminal
    assert [(row.name, row.status) for row in view.steps] == [
        ("hold", "compensated"),
        ("cool", "cancelled"),
        ("ask", "pending"),
        ("ship", "pending"),
    ]
    assert view.error == "customer asked"


def test_a_sleeping_step_is_a_wait_until_its_wake_time() -> None:
    events = sleeping_run(wake=False)
    assert _summary(events).status == "suspended"
    view = _view(events)
    assert view.status == "suspended"
    cool = view.step("cool")
    assert cool is not None and cool.status == "suspended"
    assert cool.wait is not None and cool.wait.end is None
    assert cool.wait.wake_at == events[-1]["wakeAt"] and cool.wait.sleep


def test_a_wake_ends_the_wait_and_a_signal_timeout_ends_the_signal_wait() -> None:
    events = sleeping_run(wake=True)
    view = _view(events)
    assert view.status == "failed" and view.error_type == "SignalTimeoutError"
    cool, ask = view.step("cool"), view.step("ask")
    assert cool is not None and cool.wait is not None and cool.wait.end is not None
    assert cool.status == "completed"
    assert ask is not None and ask.wait is not None and ask.wait.end == events[-3]["timestamp"]
    assert ask.status == "failed"
    assert _summary(events).status == "failed"


def test_the_pages_show_a_cancelled_run(viewer: Viewer) -> None:
    viewer.write(cancelled_run("C-9"))
    page = viewer.text("/")
    assert 'data-run-id="C-9" data-status="cancelled"' in page
    assert '<option value="cancelled"' in page
    assert 'class="badge status-cancelled"' in viewer.text("/runs/C-9")
    assert 'class="badge status-cancelled"' in viewer.text("/?status=cancelled")


def test_the_run_page_draws_a_sleep(viewer: Viewer) -> None:
    viewer.write(sleeping_run("Z-9", wake=False))
    page = viewer.text("/runs/Z-9")
    assert 'class="badge status-suspended"' in page
    assert 'title="sleeping until ' in page and ">sleep · " in page  # with the time left (dash-run)
    assert "Sleeping until" in viewer.text("/runs/Z-9/step?step=cool")
