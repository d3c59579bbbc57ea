"""flux.otel: runs as OpenTelemetry spans, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flux import (
    FatalError,
    Flux,
    FluxEngine,
    FluxSilentLogger,
    MemoryTraceSink,
    TraceEvent,
    WaitRequest,
    WorkflowContext,
    create_workflow,
)
from flux.events import EventType
from flux.events import event as build_event
from flux.otel import OpenTelemetryTraceSink
from flux.sinks import CompositeTraceSink

from .conftest import FAST


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


class Traced:
    """An engine whose events go both to the OTel sink and to a memory sink, to compare."""

    def __init__(self, provider: TracerProvider) -> None:
        self.events = MemoryTraceSink()
        self.sink = OpenTelemetryTraceSink(tracer_provider=provider)
        self.engine = FluxEngine(
            trace=CompositeTraceSink(self.events, self.sink), logger=FluxSilentLogger(), default_backoff=FAST
        )

    def of(self, kind: str, step: str | None = None) -> list[TraceEvent]:
        return [
            e for e in self.events.events if e["type"] == kind and (step is None or e.get("stepName") == step)
        ]


@pytest.fixture
def traced(provider: TracerProvider) -> Iterator[Traced]:
    t = Traced(provider)
    yield t
    t.engine.close_sync()


def ns(event: TraceEvent) -> int:
    return round(float(event["timestamp"]) * 1_000_000)


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def children_of(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    spans = [
        s
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]
    # integer-millisecond timestamps tie often: the events' numbering keeps their order
    return sorted(spans, key=lambda s: (s.attributes or {}).get("flux.seq", 0))  # type: ignore[arg-type, return-value]


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


# ---------------------------------------------------------------- workflows


def _fetch(ctx: WorkflowContext[Any]) -> dict[str, str]:
    return {"order": ctx.input["order_id"]}


def _pay(ctx: WorkflowContext[Any]) -> str:
    if ctx.attempt == 1:
        raise ConnectionError("gateway blip")
    return "paid"


order = (
    create_workflow("order")
    .step("fetch", _fetch)
    .step("payment", _pay, retries=2)
    .step("gift", lambda ctx: "wrap", when=lambda ctx: False)
    .commit("ship", lambda ctx: "shipped")
)


def _decline(ctx: WorkflowContext[Any]) -> None:
    raise FatalError("card declined")


compensated: list[str] = []
saga = (
    create_workflow("trip")
    .step("flight", lambda ctx: "F1", compensate=lambda ctx: compensated.append("flight"))
    .step("hotel", lambda ctx: "H1", compensate=lambda ctx: compensated.append("hotel"))
    .step("car", _decline)
)


def _ask(ctx: WorkflowContext[Any]) -> WaitRequest:
    return Flux.wait("approval")


approval = (
    create_workflow("expense").step("submit", lambda ctx: 1).step("approve", _ask).step("pay", lambda ctx: 2)
)


# ---------------------------------------------------------------- the span tree


def test_a_run_is_a_span_with_one_child_per_step_attempt(
    traced: Traced, exporter: InMemorySpanExporter
) -> None:
    result = traced.engine.execute_sync(order, {"order_id": "A1"}, id="ORD-1")
    assert result.ok
    run = only(spans_named(exporter, "workflow order"))
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["flux.run_id"] == "ORD-1"
    assert run.attributes["flux.workflow"] == "order"
    assert run.attributes["flux.status"] == "completed"
    assert run.attributes["flux.steps"] == 4
    assert run.status.status_code is StatusCode.UNSET

    steps = children_of(exporter, run)
    assert [(s.name, (s.attributes or {})["flux.attempt"]) for s in steps] == [
        ("step fetch", 1),
        ("step payment", 1),
        ("step payment", 2),
        ("step ship", 1),
    ]
    assert all(s.context.trace_id == run.context.trace_id for s in steps if s.context and run.context)
    failed = steps[1]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ConnectionError: gateway blip"
    assert (failed.attributes or {})["flux.error"] == "gateway blip"
    assert (failed.attributes or {})["error.type"] == "ConnectionError"
    assert [e.name for e in failed.events] == ["exception"]
    exception = dict(failed.events[0].attributes or {})
    # the engine's error events carry `stack` now: the handler's own frame, file:line
    stacktrace = exception.pop("exception.stacktrace")
    assert isinstance(stacktrace, str) and "test_otel.py" in stacktrace and "in _pay" in stacktrace
    assert exception == {"exception.type": "ConnectionError", "exception.message": "gateway blip"}
    assert steps[2].status.status_code is StatusCode.UNSET
    ship = dict(steps[3].attributes or {})
    assert ship["flux.commit"] is True and ship["flux.step"] == "ship" and ship["flux.run_id"] == "ORD-1"
    assert [e.name for e in run.events] == ["step skipped"]
    assert dict(run.events[0].attributes or {}) == {"flux.step": "gift"}


def test_span_times_are_the_events_times(traced: Traced, exporter: InMemorySpanExporter) -> None:
    traced.engine.execute_sync(order, {"order_id": "A2"}, id="ORD-2")
    run = only(spans_named(exporter, "workflow order"))
    assert run.start_time == ns(traced.of("workflow:start")[0])
    assert run.end_time == ns(traced.of("workflow:complete")[0])
    payment = [s for s in children_of(exporter, run) if s.name == "step payment"]
    starts = traced.of("step:start", "payment")
    ends = [*traced.of("step:retry", "payment"), *traced.of("step:complete", "payment")]
    assert [(s.start_time, s.end_time) for s in payment] == [
        (ns(a), ns(b)) for a, b in zip(starts, ends, strict=True)
    ]
    children = children_of(exporter, run)
    for child in children:
        assert child.start_time is not None and child.end_time is not None
        assert run.start_time is not None and run.end_time is not None
        assert run.start_time <= child.start_time <= child.end_time <= run.end_time
    for before, after in itertools.pairwise(children):
        assert before.end_time is not None and after.start_time is not None
        assert before.end_time <= after.start_time  # attempts and steps follow each other


def test_a_failed_run_has_its_compensations_as_spans(traced: Traced, exporter: InMemorySpanExporter) -> None:
    compensated.clear()
    result = traced.engine.execute_sync(saga, id="TRIP-1")
    assert result.status == "rolled_back" and compensated == ["hotel", "flight"]
    run = only(spans_named(exporter, "workflow trip"))
    attributes = dict(run.attributes or {})
    assert attributes["flux.status"] == "rolled_back"
    assert attributes["flux.failed_step"] == "car"
    assert attributes["error.type"] == "FatalError"
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "FatalError: card declined"
    assert [e.name for e in run.events] == ["rollback started", "rollback finished", "exception"]

    children = children_of(exporter, run)
    assert [s.name for s in children] == [
        "step flight",
        "step hotel",
        "step car",
        "compensate hotel",
        "compensate flight",
    ]
    car = children[2]
    assert (
        car.status.status_code is StatusCode.ERROR and (car.attributes or {})["flux.step_status"] == "failed"
    )
    for span, event in zip(children[3:], traced.of("step:compensate"), strict=True):
        assert dict(span.attributes or {})["flux.compensation"] is True
        assert span.end_time == ns(event)
        assert span.start_time == ns(event) - round(event["duration"] * 1_000_000)
        assert span.status.status_code is StatusCode.UNSET


def test_a_compensation_that_fails_is_an_error_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def undo(ctx: WorkflowContext[Any]) -> None:
        raise RuntimeError("cannot cancel")

    flow = (
        create_workflow("trip")
        .step("flight", lambda ctx: 1, compensate=undo, retries=1)
        .step("car", _decline)
    )
    traced = Traced(provider)
    with traced.engine:
        result = traced.engine.execute_sync(flow, id="TRIP-2")
    assert result.status == "rollback_failed"
    run = only(spans_named(exporter, "workflow trip"))
    undo_spans = [s for s in children_of(exporter, run) if s.name == "compensate flight"]
    assert [(s.attributes or {})["flux.attempt"] for s in undo_spans] == [1, 2]
    assert [(s.attributes or {})["flux.step_status"] for s in undo_spans] == [
        "retrying",
        "compensation_failed",
    ]
    assert all(s.status.status_code is StatusCode.ERROR for s in undo_spans)
    assert dict(run.attributes or {})["flux.status"] == "rollback_failed"


def test_a_suspended_run_ends_its_span_and_the_signal_starts_another(
    traced: Traced, exporter: InMemorySpanExporter
) -> None:
    waiting = traced.engine.execute_sync(approval, id="EXP-1")
    assert waiting.status == "suspended"
    first = only(spans_named(exporter, "workflow expense"))
    attributes = dict(first.attributes or {})
    assert attributes["flux.status"] == "suspended"
    assert attributes["flux.waiting_for"] == "approval"
    assert first.status.status_code is StatusCode.UNSET
    assert first.end_time == ns(traced.of("step:suspend")[0])
    assert [s.name for s in children_of(exporter, first)] == ["step submit", "step approve"]
    approve = children_of(exporter, first)[1]
    assert dict(approve.attributes or {})["flux.waiting_for"] == "approval"

    done = traced.engine.signal_sync(approval, "EXP-1", "approval", {"ok": True})
    assert done.ok
    second = next(s for s in spans_named(exporter, "workflow expense") if s is not first)
    attributes = dict(second.attributes or {})
    assert attributes["flux.resume_reason"] == "signal"
    assert attributes["flux.signal"] == "approval"
    assert attributes["flux.status"] == "completed"
    assert second.start_time == ns(traced.of("signal:received")[0])
    assert [e.name for e in second.events] == ["signal received"]
    assert [s.name for s in children_of(exporter, second)] == ["step pay"]


def test_a_resumed_run_starts_a_span_that_says_so(traced: Traced, exporter: InMemorySpanExporter) -> None:
    calls = {"n": 0}

    def once_broken(ctx: WorkflowContext[Any]) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise FatalError("not yet")
        return "ok"

    flow = create_workflow("job").step("a", lambda ctx: 1).step("b", once_broken)
    assert traced.engine.execute_sync(flow, id="JOB-1").status == "failed"
    assert traced.engine.resume_sync(flow, "JOB-1").ok
    first, second = sorted(spans_named(exporter, "workflow job"), key=lambda s: s.start_time or 0)
    assert first.status.status_code is StatusCode.ERROR
    attributes = dict(second.attributes or {})
    assert attributes["flux.resumed"] is True
    assert attributes["flux.resume_reason"] == "resume"
    assert attributes["flux.resume_from"] == "b"
    assert [s.name for s in children_of(exporter, second)] == ["step b"]


def test_a_step_that_fails_before_it_starts_still_has_a_span(
    traced: Traced, exporter: InMemorySpanExporter
) -> None:
    def bad_condition(ctx: WorkflowContext[Any]) -> bool:
        raise KeyError("route")

    flow = create_workflow("route").step("pick", lambda ctx: 1, when=bad_condition)
    assert traced.engine.execute_sync(flow, id="R-1").status == "failed"
    run = only(spans_named(exporter, "workflow route"))
    pick = only(children_of(exporter, run))
    assert pick.name == "step pick"
    assert pick.status.status_code is StatusCode.ERROR
    assert pick.end_time == ns(traced.of("step:error")[0])


# ---------------------------------------------------------------- the application's tracing


def test_the_run_span_is_a_child_of_the_callers_span(
    provider: TracerProvider, exporter: InMemorySpanExporter, traced: Traced
) -> None:
    tracer = provider.get_tracer("app")

    async def handle_request() -> None:
        with tracer.start_as_current_span("POST /orders"):
            await traced.engine.execute(order, {"order_id": "A3"}, id="ORD-3")

    asyncio.run(handle_request())
    request = only(spans_named(exporter, "POST /orders"))
    run = only(spans_named(exporter, "workflow order"))
    assert run.parent is not None and request.context is not None
    assert run.parent.span_id == request.context.span_id


def test_without_a_provider_the_global_one_is_used_and_none_is_installed(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = trace.get_tracer_provider()
    monkeypatch.setattr(trace, "set_tracer_provider", lambda p: pytest.fail("the sink set a provider"))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    sink = OpenTelemetryTraceSink()
    with FluxEngine(trace=sink, logger=FluxSilentLogger()) as engine:
        engine.execute_sync(order.step("extra", lambda ctx: 0), {"order_id": "A4"}, id="ORD-4")
    monkeypatch.undo()
    assert trace.get_tracer_provider() is before
    assert only(spans_named(exporter, "workflow order")).attributes is not None


def test_close_ends_the_spans_of_runs_still_open(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    sink = OpenTelemetryTraceSink(tracer_provider=provider)
    base = {"workflowId": "R-9", "workflowName": "w", "timestamp": 1_700_000_000_000.0}
    sink.emit({**base, "type": "workflow:start", "meta": {"steps": [{"name": "a"}]}})
    sink.emit({**base, "type": "step:start", "stepName": "a", "stepIndex": 0, "attempt": 1})
    sink.emit({**base, "type": "a future event type"})
    assert exporter.get_finished_spans() == ()
    sink.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"workflow w", "step a"}
    assert all(dict(s.attributes or {})["flux.unfinished"] is True for s in spans.values())
    assert spans["workflow w"].start_time == 1_700_000_000_000_000_000
    sink.close()  # twice is fine
    assert len(exporter.get_finished_spans()) == 2


def test_without_the_api_installed_the_import_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "flux.otel")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'gravito-flux\[otel\]'"):
        importlib.import_module("flux.otel")


# ---------------------------------------------------------------- the vocabulary beyond §6


def _ev(kind: EventType, seq: int, ms: int, **fields: Any) -> TraceEvent:
    return build_event(kind, run_id="N-1", name="nap", seq=seq, timestamp=ms, **fields)


def test_an_error_event_s_stack_is_on_the_span_and_its_exception(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    sink = OpenTelemetryTraceSink(tracer_provider=provider)
    stack = [
        {"file": "/app/flows.py", "line": 12, "function": "charge"},
        {"file": "/app/gateway.py", "line": 40, "function": "post"},
    ]
    sink.emit(_ev(EventType.WORKFLOW_START, 1, 1_000))
    sink.emit(_ev(EventType.STEP_START, 2, 1_001, stepName="pay", stepIndex=0, attempt=1))
    sink.emit(
        _ev(EventType.STEP_ERROR, 3, 1_002, stepName="pay", stepIndex=0, attempt=1,
            error="declined", errorType="FatalError", stack=stack)
    )  # fmt: skip
    sink.emit(
        _ev(EventType.WORKFLOW_ERROR, 4, 1_003, status="failed", error="declined", errorType="FatalError")
    )
    step = only(spans_named(exporter, "step pay"))
    lines = ['File "/app/flows.py", line 12, in charge', 'File "/app/gateway.py", line 40, in post']
    assert tuple(dict(step.attributes or {})["flux.stack"]) == tuple(lines)  # type: ignore[arg-type]
    [exception] = [e for e in step.events if e.name == "exception"]
    assert dict(exception.attributes or {})["exception.stacktrace"] == "\n".join(lines)
    run = only(spans_named(exporter, "workflow nap"))
    assert "flux.stack" not in dict(run.attributes or {})  # no stack on that event: none recorded


def test_a_sleep_ends_the_run_span_and_the_wake_starts_another(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    sink = OpenTelemetryTraceSink(tracer_provider=provider)
    sink.emit(_ev(EventType.WORKFLOW_START, 1, 1_000))
    sink.emit(_ev(EventType.STEP_START, 2, 1_001, stepName="cool", stepIndex=0, attempt=1))
    sink.emit(_ev(EventType.STEP_SLEEP, 3, 1_002, stepName="cool", stepIndex=0, wakeAt=9_000))
    first = only(spans_named(exporter, "workflow nap"))
    assert dict(first.attributes or {})["flux.wake_at"] == 9_000
    assert first.end_time == 1_002_000_000
    assert dict(only(spans_named(exporter, "step cool")).attributes or {})["flux.step_status"] == "sleeping"
    sink.emit(_ev(EventType.STEP_WAKE, 4, 9_000, stepName="cool", stepIndex=0))
    sink.emit(_ev(EventType.STEP_COMPLETE, 5, 9_001, stepName="cool", stepIndex=0, attempt=1, duration=0))
    sink.emit(_ev(EventType.WORKFLOW_COMPLETE, 6, 9_002, status="completed"))
    second = next(s for s in spans_named(exporter, "workflow nap") if s is not first)
    assert dict(second.attributes or {})["flux.resume_reason"] == "wake"
    assert second.start_time == 9_000_000_000
    assert [e.name for e in second.events] == ["wake"]


def test_a_cancel_a_signal_timeout_and_an_action_are_span_events(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    sink = OpenTelemetryTraceSink(tracer_provider=provider)
    sink.emit(_ev(EventType.SIGNAL_TIMEOUT, 5, 2_000, stepName="ask", stepIndex=0, signal="approval"))
    sink.emit(_ev(EventType.WORKFLOW_ACTION, 6, 2_001, action="cancel", by="dashboard"))
    sink.emit(_ev(EventType.WORKFLOW_CANCEL, 7, 2_002, reason="customer asked"))
    sink.emit(_ev(EventType.WORKFLOW_ERROR, 8, 2_003, status="cancelled", error="customer asked"))
    run = only(spans_named(exporter, "workflow nap"))
    attributes = dict(run.attributes or {})
    assert attributes["flux.resume_reason"] == "signal_timeout"
    assert attributes["flux.cancel_reason"] == "customer asked"
    assert attributes["flux.status"] == "cancelled"
    assert [e.name for e in run.events] == ["signal timeout", "action", "cancel", "exception"]
