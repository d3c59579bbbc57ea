"""Hand-written trace events for the run page's tests, each at a time of the test's choosing
(epoch ms), in the engine's vocabulary (SPEC §6, §9, §10)."""

from __future__ import annotations

from typing import Any

from flux.events import EventType as E

T0 = 1_796_000_000_000  # 2026-11-30T...Z, epoch ms


class Run:
    """One run's events: ``at(ms)`` sets the clock (ms after ``T0``), each call appends."""

    def __init__(self, run_id: str, steps: tuple[str, ...], workflow: str = "trip", t0: int = T0) -> None:
        self.run_id, self.workflow, self.steps = run_id, workflow, steps
        self.t0 = t0
        self.t = t0
        self.events: list[dict[str, Any]] = []

    def at(self, ms: float) -> Run:
        self.t = self.t0 + ms
        return self

    def ev(self, kind: E, **fields: Any) -> Run:
        self.events.append(
            {
                "v": 1,
                "seq": len(self.events) + 1,
                "type": kind.value,
                "timestamp": self.t,
                "workflowId": self.run_id,
                "workflowName": self.workflow,
                **fields,
            }
        )
        return self

    def _step(self, name: str) -> dict[str, Any]:
        return {"stepName": name, "stepIndex": self.steps.index(name) if name in self.steps else 99}

    def meta(self, **extra: Any) -> dict[str, Any]:
        return {"steps": [{"name": n, "commit": False} for n in self.steps], "version": None, **extra}

    def start(self, input: Any = None, **meta: Any) -> Run:
        return self.ev(E.WORKFLOW_START, status="running", input=input or {}, meta=self.meta(**meta))

    def resume(self, from_step: str, reason: str) -> Run:
        return self.ev(E.WORKFLOW_RESUME, status="running", meta=self.meta(fromStep=from_step, reason=reason))

    def begin(self, name: str, attempt: int = 1) -> Run:
        return self.ev(E.STEP_START, **self._step(name), attempt=attempt, maxRetries=3)

    def done(self, name: str, duration: float, output: Any = None, data: Any = None) -> Run:
        fields: dict[str, Any] = {"duration": duration, "output": output}
        if data is not None:
            fields["data"] = data
        return self.ev(E.STEP_COMPLETE, **self._step(name), **fields)

    def retry(self, name: str, attempt: int, duration: float, error: str = "boom", **more: Any) -> Run:
        return self.ev(
            E.STEP_RETRY, **self._step(name), attempt=attempt, duration=duration, error=error,
            errorType="ProviderDown", **more,
        )  # fmt: skip

    def error(
        self,
        name: str,
        attempt: int,
        duration: float,
        error: str = "boom",
        error_type: str = "ProviderDown",
        **more: Any,
    ) -> Run:
        return self.ev(
            E.STEP_ERROR, **self._step(name), attempt=attempt, duration=duration, error=error,
            errorType=error_type, **more,
        )  # fmt: skip

    def suspend(self, name: str, signal: str, **more: Any) -> Run:
        return self.ev(E.STEP_SUSPEND, **self._step(name), signal=signal, status="suspended", **more)

    def signal(self, name: str, signal: str, payload: Any = None) -> Run:
        return self.ev(E.SIGNAL_RECEIVED, **self._step(name), signal=signal, output=payload)

    def complete(self, duration: float, data: Any = None) -> Run:
        return self.ev(E.WORKFLOW_COMPLETE, status="completed", duration=duration, data=data or {})

    def fail(self, status: str, error: str, error_type: str = "ProviderDown", **more: Any) -> Run:
        return self.ev(E.WORKFLOW_ERROR, status=status, error=error, errorType=error_type, **more)


def saga_that_fails_to_undo() -> Run:
    """flight and hotel booked, payment declined, hotel's undo fails for good."""
    r = Run("TRIP-9", ("flight", "hotel", "payment"))
    r.at(0).start({"traveler": "Grace Hopper"})
    r.at(0).begin("flight").at(40).done("flight", 40, {"ref": "AIR-9"})
    r.at(40).begin("hotel").at(90).done("hotel", 50, {"ref": "HTL-9"})
    r.at(90).begin("payment").at(120).error("payment", 1, 30, "card declined", "FatalError")
    r.ev(E.WORKFLOW_ROLLBACK_START, status="rolling_back")
    r.at(125).ev(E.STEP_COMPENSATE_ERROR, **r._step("hotel"), attempt=1, duration=5, error="hotel API down",
                 errorType="HotelDown", status="compensation_failed")  # fmt: skip
    r.at(140).ev(E.STEP_COMPENSATE, **r._step("flight"), attempt=1, duration=15, status="compensated")
    r.ev(E.WORKFLOW_ROLLBACK_COMPLETE, status="rollback_failed")
    r.fail("rollback_failed", "card declined", "FatalError", stepName="payment", duration=140)
    return r


def retried_by_retry_step() -> Run:
    """send fails three times (back-offs of 50 and 100 ms), the run fails; retry_step
    runs it again 5 s later and it succeeds at its first attempt."""
    r = Run("INV-1", ("load", "send", "archive"), workflow="invoice")
    r.at(0).start({"invoice": "INV-2026-0042"})
    r.at(0).begin("load").at(20).done("load", 20, {"name": "Ada"}, {"email": "ada@example.com"})
    stack = [
        {"file": "/app/mail.py", "line": 88, "function": "send_invoice"},
        {"file": "/app/smtp.py", "line": 12, "function": "connect"},
    ]
    r.at(20).begin("send", 1).at(30).retry("send", 1, 10, "connection refused", stack=stack)
    r.at(80).begin("send", 2).at(90).retry("send", 2, 10, "connection refused", stack=stack)
    r.at(190).begin("send", 3).at(200).error("send", 3, 10, "connection refused", stack=stack)
    r.fail("failed", "connection refused", stepName="send", duration=200, stack=stack)
    r.at(5200).resume("send", "retry_step")
    r.at(5200).begin("send", 1).at(5260).done("send", 60, {"id": "<1@mail>"})
    r.at(5260).begin("archive").at(5300).done("archive", 40, None, {"email": "ada@example.com", "sent": 1})
    r.complete(100, {"email": "ada@example.com", "sent": 1})  # the engine times the last execution only
    return r
