"""`OpenTelemetryTraceSink`: a run as an OpenTelemetry span, with a child span per step
attempt and per compensation.

Needs only `opentelemetry-api` (`pip install 'gravito-flux[otel]'`); the spans go wherever
the application's tracer provider sends them. The sink never installs a provider.

```
workflow order-process                    run span (flux.run_id, flux.status, ...)
├── step fetch                            one span per attempt (flux.attempt = 1)
├── step payment        ERROR             a failed attempt, retried
├── step payment                          flux.attempt = 2
└── compensate reserve                    saga compensation after a later failure
```

The run span starts at `workflow:start`, or at `workflow:resume` / `signal:received` when a
stopped run goes on, and ends when the run completes, fails, or suspends (then with
`flux.waiting_for`, and a new run span starts when the signal arrives). Start and end times
are the events' own timestamps. A run span's parent is the span current when the engine was
called (the request that started the run, when the application traces its requests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "flux.otel needs the OpenTelemetry API: pip install 'gravito-flux[otel]'", name=exc.name
    ) from exc

from .events import EventType
from .trace import TraceEvent

__all__ = ["OpenTelemetryTraceSink"]

Attributes = dict[str, str | bool | int | float | Sequence[str]]


def _ns(event: TraceEvent) -> int:
    """The event's timestamp (epoch milliseconds, a float) in epoch nanoseconds."""
    return round(float(event["timestamp"]) * 1_000_000)


def _ms_to_ns(ms: Any) -> int:
    return round(float(ms or 0) * 1_000_000)


def _frames(stack: Any) -> list[str]:
    """An event's `stack` as one line per frame, innermost last, as a traceback prints them."""
    if not isinstance(stack, list):
        return []
    return [
        f'File "{frame.get("file")}", line {frame.get("line")}, in {frame.get("function")}'
        for frame in stack
        if isinstance(frame, dict)
    ]


@dataclass
class _Run:
    span: trace.Span
    context: otel_context.Context
    #: Open attempt spans by step index.
    steps: dict[int, trace.Span] = field(default_factory=dict)


class OpenTelemetryTraceSink:
    """Turns trace events into spans on `tracer_provider` (default: the global provider,
    so spans start flowing once the application sets one up, even after this sink exists)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        from . import __version__

        self.tracer = trace.get_tracer("flux", __version__, tracer_provider)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the sink

    def emit(self, event: TraceEvent) -> None:
        handler = self._handlers.get(str(event.get("type")))
        if handler is not None:
            with self._lock:
                handler(self, event)

    def emit_raw(self, event: TraceEvent, raw: dict[str, str]) -> None:
        """The engine's fast path: spans carry no input, data or output, so the values it
        passes as JSON text are not even decoded."""
        self.emit(event)

    def close(self) -> None:
        """End the spans of runs still open (their process stops before they did)."""
        now = time.time_ns()
        with self._lock:
            runs, self._runs = self._runs, {}
        for run in runs.values():
            for span in run.steps.values():
                span.set_attribute("flux.unfinished", True)
                span.end(now)
            run.span.set_attribute("flux.unfinished", True)
            run.span.end(now)

    # ------------------------------------------------------------------ run spans

    def _start_run(self, event: TraceEvent, extra: Attributes | None = None) -> _Run:
        run_id = str(event["workflowId"])
        old = self._runs.pop(run_id, None)
        if old is not None:  # a run that went on without a visible end: close what was open
            self._end_run(old, _ns(event), {"flux.unfinished": True})
        attributes: Attributes = {"flux.run_id": run_id, "flux.workflow": str(event["workflowName"])}
        meta = event.get("meta")
        if isinstance(meta, dict):
            if meta.get("version"):
                attributes["flux.version"] = str(meta["version"])
            if isinstance(meta.get("steps"), list):
                attributes["flux.steps"] = len(meta["steps"])
            if meta.get("reason"):
                attributes["flux.resume_reason"] = str(meta["reason"])
            if meta.get("fromStep"):
                attributes["flux.resume_from"] = str(meta["fromStep"])
        attributes.update(extra or {})
        span = self.tracer.start_span(
            f"workflow {event['workflowName']}", attributes=attributes, start_time=_ns(event)
        )
        run = _Run(span, trace.set_span_in_context(span))
        self._runs[run_id] = run
        return run

    def _run(self, event: TraceEvent) -> _Run:
        """The open run span of the event's run; one starts here if this process did not
        see the run begin."""
        run = self._runs.get(str(event["workflowId"]))
        return run if run is not None else self._start_run(event)

    @staticmethod
    def _end_run(run: _Run, end: int, attributes: Attributes) -> None:
        for span in run.steps.values():
            span.set_attribute("flux.unfinished", True)
            span.end(end)
        run.steps.clear()
        run.span.set_attributes(attributes)
        run.span.end(end)

    def _finish_run(self, event: TraceEvent, attributes: Attributes) -> _Run:
        run = self._run(event)
        del self._runs[str(event["workflowId"])]
        if event.get("status"):
            attributes = {"flux.status": str(event["status"]), **attributes}
        self._end_run(run, _ns(event), attributes)
        return run

    # ------------------------------------------------------------------ step spans

    def _step_attributes(self, event: TraceEvent, attempt_key: str = "attempt") -> Attributes:
        attributes: Attributes = {
            "flux.run_id": str(event["workflowId"]),
            "flux.workflow": str(event["workflowName"]),
            "flux.step": str(event.get("stepName")),
            "flux.step_index": int(event.get("stepIndex", -1)),
            "flux.commit": bool(event.get("commit", False)),
            # events are numbered per run: the order of spans that begin in one millisecond
            "flux.seq": int(event.get("seq", 0)),
        }
        if event.get(attempt_key) is not None:
            attributes["flux.attempt"] = int(event[attempt_key])
        return attributes

    def _start_step(self, run: _Run, event: TraceEvent, name: str, start: int) -> trace.Span:
        return self.tracer.start_span(
            f"{name} {event.get('stepName')}",
            context=run.context,
            attributes=self._step_attributes(event),
            start_time=start,
        )

    def _take_step(self, event: TraceEvent) -> trace.Span:
        """The open attempt span the event ends; one that covers the event's `duration` when
        the step failed before it started (a `when` that raised, an interrupted commit)."""
        run = self._run(event)
        span = run.steps.pop(int(event.get("stepIndex", -1)), None)
        if span is None:
            span = self._start_step(run, event, "step", _ns(event) - _ms_to_ns(event.get("duration")))
        return span

    @staticmethod
    def _fail(span: trace.Span, event: TraceEvent) -> None:
        error = str(event.get("error") or "error")
        error_type = str(event.get("errorType") or "Exception")
        attributes: Attributes = {
            "error.type": error_type,
            "flux.error": error,
            "flux.error_type": error_type,
        }
        exception: Attributes = {"exception.type": error_type, "exception.message": error}
        frames = _frames(event.get("stack"))
        if frames:
            attributes["flux.stack"] = frames
            exception["exception.stacktrace"] = "\n".join(frames)
        span.set_attributes(attributes)
        span.add_event("exception", exception, timestamp=_ns(event))
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{error_type}: {error}"))

    # ------------------------------------------------------------------ events

    def _on_start(self, event: TraceEvent) -> None:
        self._start_run(event)

    def _on_resume(self, event: TraceEvent) -> None:
        self._start_run(event, {"flux.resumed": True})

    def _on_signal(self, event: TraceEvent) -> None:
        run = self._runs.get(str(event["workflowId"]))
        if run is None:
            signal = str(event.get("signal"))
            run = self._start_run(
                event, {"flux.resumed": True, "flux.resume_reason": "signal", "flux.signal": signal}
            )
        run.span.add_event(
            "signal received",
            {"flux.signal": str(event.get("signal")), "flux.step": str(event.get("stepName"))},
            timestamp=_ns(event),
        )

    def _on_step_start(self, event: TraceEvent) -> None:
        run = self._run(event)
        index = int(event.get("stepIndex", -1))
        stale = run.steps.pop(index, None)
        if stale is not None:
            stale.set_attribute("flux.unfinished", True)
            stale.end(_ns(event))
        run.steps[index] = self._start_step(run, event, "step", _ns(event))

    def _on_step_complete(self, event: TraceEvent) -> None:
        span = self._take_step(event)
        span.set_attribute("flux.step_status", "completed")
        span.end(_ns(event))

    def _on_step_retry(self, event: TraceEvent) -> None:
        span = self._take_step(event)
        self._fail(span, event)
        span.set_attributes({"flux.step_status": "retrying", "flux.retry": True})
        span.end(_ns(event))

    def _on_step_error(self, event: TraceEvent) -> None:
        span = self._take_step(event)
        self._fail(span, event)
        span.set_attribute("flux.step_status", "failed")
        span.end(_ns(event))

    def _on_step_skipped(self, event: TraceEvent) -> None:
        self._run(event).span.add_event(
            "step skipped", {"flux.step": str(event.get("stepName"))}, timestamp=_ns(event)
        )

    def _on_step_suspend(self, event: TraceEvent) -> None:
        signal = str(event.get("signal"))
        span = self._take_step(event)
        span.set_attributes({"flux.step_status": "suspended", "flux.waiting_for": signal})
        span.end(_ns(event))
        self._finish_run(event, {"flux.waiting_for": signal})

    def _on_step_sleep(self, event: TraceEvent) -> None:
        # Like a suspend: nothing holds a sleeping run, so its span ends; the wake starts one.
        wake: Attributes = {}
        if type(event.get("wakeAt")) in (int, float):
            wake["flux.wake_at"] = event["wakeAt"]
        span = self._take_step(event)
        span.set_attributes({"flux.step_status": "sleeping", **wake})
        span.end(_ns(event))
        self._finish_run(event, {"flux.sleeping": True, **wake})

    def _went_on(self, event: TraceEvent, reason: str, name: str, attributes: Attributes) -> None:
        """A run span goes on (or starts again, the run having slept or waited) with `name`."""
        run = self._runs.get(str(event["workflowId"]))
        if run is None:
            run = self._start_run(event, {"flux.resumed": True, "flux.resume_reason": reason, **attributes})
        run.span.add_event(
            name, {"flux.step": str(event.get("stepName")), **attributes}, timestamp=_ns(event)
        )

    def _on_step_wake(self, event: TraceEvent) -> None:
        self._went_on(event, "wake", "wake", {})

    def _on_signal_timeout(self, event: TraceEvent) -> None:
        self._went_on(event, "signal_timeout", "signal timeout", {"flux.signal": str(event.get("signal"))})

    def _on_cancel(self, event: TraceEvent) -> None:
        reason = str(event.get("reason") or "")
        run = self._run(event)
        run.span.set_attribute("flux.cancel_reason", reason)
        run.span.add_event("cancel", {"flux.reason": reason}, timestamp=_ns(event))

    def _on_action(self, event: TraceEvent) -> None:
        # Written by the CLI or the dashboard, usually in a process that runs nothing: a
        # span event on a run this sink has open, and no span of its own.
        run = self._runs.get(str(event["workflowId"]))
        if run is not None:
            attributes: Attributes = {
                "flux.action": str(event.get("action")),
                "flux.by": str(event.get("by")),
            }
            run.span.add_event("action", attributes, timestamp=_ns(event))

    def _on_compensate(self, event: TraceEvent) -> None:
        run = self._run(event)
        end = _ns(event)
        span = self._start_step(run, event, "compensate", end - _ms_to_ns(event.get("duration")))
        span.set_attribute("flux.compensation", True)
        if event["type"] == EventType.STEP_COMPENSATE_ERROR:
            self._fail(span, event)
            failed = event.get("status") == "compensation_failed"
            span.set_attribute("flux.step_status", "compensation_failed" if failed else "retrying")
        else:
            span.set_attribute("flux.step_status", "compensated")
        span.end(end)

    def _on_rollback(self, event: TraceEvent) -> None:
        attributes: Attributes = {"flux.status": str(event.get("status"))}
        if event.get("stepName"):
            attributes["flux.failed_step"] = str(event["stepName"])
        name = (
            "rollback started" if event["type"] == EventType.WORKFLOW_ROLLBACK_START else "rollback finished"
        )
        self._run(event).span.add_event(name, attributes, timestamp=_ns(event))

    def _on_complete(self, event: TraceEvent) -> None:
        self._finish_run(event, {})

    def _on_error(self, event: TraceEvent) -> None:
        attributes: Attributes = {}
        if event.get("stepName"):
            attributes["flux.failed_step"] = str(event["stepName"])
        run = self._run(event)
        self._fail(run.span, event)
        self._finish_run(event, attributes)

    _handlers: ClassVar[dict[str, Callable[[OpenTelemetryTraceSink, TraceEvent], None]]] = {
        EventType.WORKFLOW_START: _on_start,
        EventType.WORKFLOW_RESUME: _on_resume,
        EventType.SIGNAL_RECEIVED: _on_signal,
        EventType.STEP_START: _on_step_start,
        EventType.STEP_COMPLETE: _on_step_complete,
        EventType.STEP_RETRY: _on_step_retry,
        EventType.STEP_ERROR: _on_step_error,
        EventType.STEP_SKIPPED: _on_step_skipped,
        EventType.STEP_SUSPEND: _on_step_suspend,
        EventType.STEP_COMPENSATE: _on_compensate,
        EventType.STEP_COMPENSATE_ERROR: _on_compensate,
        EventType.WORKFLOW_ROLLBACK_START: _on_rollback,
        EventType.WORKFLOW_ROLLBACK_COMPLETE: _on_rollback,
        EventType.WORKFLOW_COMPLETE: _on_complete,
        EventType.WORKFLOW_ERROR: _on_error,
        EventType.WORKFLOW_CANCEL: _on_cancel,
        EventType.STEP_SLEEP: _on_step_sleep,
        EventType.STEP_WAKE: _on_step_wake,
        EventType.SIGNAL_TIMEOUT: _on_signal_timeout,
        EventType.WORKFLOW_ACTION: _on_action,
    }
