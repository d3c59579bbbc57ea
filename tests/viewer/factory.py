"""Trace events built by hand, in Flux's vocabulary or in @gravito/flux's.

Shared by the viewer tests and the end-to-end tests' fake engine, so that both
write the same realistic shapes as the engine (see SPEC §6).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

T0 = 1_767_225_600_000.0  # 2026-01-01T00:00:00Z, in epoch ms


class RunWriter:
    """One run's events; each call returns the event and advances the clock."""

    def __init__(
        self,
        run_id: str,
        workflow: str = "order-process",
        steps: Sequence[tuple[str, bool]] = (("fetch", False), ("payment", False)),
        *,
        t0: float = T0,
        gravito: bool = False,
        tick: float = 10.0,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.steps = list(steps)
        self.now = t0
        self.tick = tick
        self.gravito = gravito
        self.seq = 0

    def index(self, name: str) -> int:
        names = [n for n, _ in self.steps]
        return names.index(name) if name in names else len(names)

    def commit(self, name: str) -> bool:
        return dict(self.steps).get(name, False)

    def event(self, type_: str, **fields: Any) -> dict[str, Any]:
        self.now += self.tick
        ev: dict[str, Any] = {}
        if not self.gravito:
            self.seq += 1
            ev.update(v=1, seq=self.seq)
        ev.update(type=type_, timestamp=self.now, workflowId=self.run_id, workflowName=self.workflow)
        if self.gravito:
            # The TypeScript engine writes none of Flux's additions.
            for key in ("attempt", "errorType", "output", "signal"):
                fields.pop(key, None)
        ev.update(fields)
        return ev

    def _step(self, name: str) -> dict[str, Any]:
        return {"stepName": name, "stepIndex": self.index(name)}

    def start(self, input: Any = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"steps": [{"name": n, "commit": c} for n, c in self.steps]}
        meta["version"] = None
        if self.gravito:
            return self.event("workflow:start", status="running", input=input or {})
        return self.event("workflow:start", status="running", input=input or {}, meta=meta)

    def resume(self, from_step: str, reason: str = "resume") -> dict[str, Any]:
        meta = {"steps": [{"name": n, "commit": c} for n, c in self.steps], "fromStep": from_step}
        meta["reason"] = reason
        return self.event("workflow:resume", status="running", meta=meta)

    def step_start(self, name: str, attempt: int = 1, max_retries: int = 3) -> dict[str, Any]:
        extra: dict[str, Any] = {"attempt": attempt, "maxRetries": max_retries}
        if self.gravito:
            extra = {"retries": attempt - 1, "status": "running"}
        return self.event("step:start", **self._step(name), commit=self.commit(name), **extra)

    def retry(self, name: str, attempt: int, error: str, error_type: str = "RuntimeError") -> dict[str, Any]:
        return self.event(
            "step:retry",
            **self._step(name),
            attempt=attempt,
            retries=attempt,
            maxRetries=3,
            error=error,
            errorType=error_type,
            duration=self.tick / 2,
        )

    def complete(self, name: str, output: Any = None, data: Any = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"attempt": 1, "duration": self.tick / 2, "output": output}
        if data is not None:
            fields["data"] = data
        if self.gravito:
            fields["status"] = "completed"
        return self.event("step:complete", **self._step(name), commit=self.commit(name), **fields)

    def skipped(self, name: str) -> dict[str, Any]:
        return self.event("step:skipped", **self._step(name), status="skipped")

    def step_error(
        self, name: str, error: str, error_type: str = "RuntimeError", attempt: int = 1
    ) -> dict[str, Any]:
        return self.event(
            "step:error",
            **self._step(name),
            attempt=attempt,
            duration=self.tick / 2,
            error=error,
            errorType=error_type,
        )

    def suspend(self, name: str, signal: str) -> dict[str, Any]:
        return self.event("step:suspend", **self._step(name), signal=signal, status="suspended")

    def signal(self, name: str, signal: str, payload: Any = None) -> dict[str, Any]:
        return self.event("signal:received", **self._step(name), signal=signal, output=payload)

    def rollback_start(self) -> dict[str, Any]:
        return self.event("workflow:rollback_start", status="rolling_back")

    def compensate(self, name: str, attempt: int = 1) -> dict[str, Any]:
        return self.event(
            "step:compensate",
            **self._step(name),
            attempt=attempt,
            duration=self.tick / 2,
            status="compensated",
        )

    def compensate_error(self, name: str, error: str, *, final: bool, attempt: int = 1) -> dict[str, Any]:
        fields: dict[str, Any] = {"attempt": attempt, "duration": self.tick / 2, "error": error}
        fields["errorType"] = "RuntimeError"
        if final:
            fields["status"] = "compensation_failed"
        return self.event("step:compensate_error", **self._step(name), **fields)

    def rollback_complete(self, status: str = "rolled_back") -> dict[str, Any]:
        return self.event("workflow:rollback_complete", status=status)

    def fail(
        self, error: str, error_type: str = "RuntimeError", status: str = "failed", data: Any = None
    ) -> dict[str, Any]:
        return self.event(
            "workflow:error",
            status=status,
            error=error,
            errorType=error_type,
            duration=self.now - T0,
            data=data if data is not None else {},
        )

    def finish(self, data: Any = None) -> dict[str, Any]:
        return self.event(
            "workflow:complete",
            status="completed",
            duration=self.now - T0,
            data=data if data is not None else {},
        )


def ndjson(events: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(ev).encode() + b"\n" for ev in events)


SAGA_STEPS = (
    ("fetch", False),
    ("payment", False),
    ("auto", False),
    ("approve", False),
    ("fulfill", True),
)


def saga_run(run_id: str = "ORD-1", t0: float = T0) -> list[dict[str, Any]]:
    """Everything at once: a retry, a skipped step, a wait for a signal, a failing
    commit and the compensation of the step before it."""
    w = RunWriter(run_id, steps=SAGA_STEPS, t0=t0)
    return [
        w.start({"order_id": run_id}),
        w.step_start("fetch"),
        w.complete("fetch", {"id": run_id}, {"order": {"id": run_id}}),
        w.step_start("payment"),
        w.retry("payment", 1, "gateway timeout", "TimeoutError"),
        w.step_start("payment", attempt=2),
        w.complete("payment", {"charged": 10}, {"order": {"id": run_id}, "paid": True}),
        w.skipped("auto"),
        w.step_start("approve"),
        w.suspend("approve", "approval"),
        w.signal("approve", "approval", {"by": "ann"}),
        w.step_start("fulfill", max_retries=0),
        w.step_error("fulfill", "out of stock", "FatalError"),
        w.rollback_start(),
        w.compensate("payment"),
        w.rollback_complete("rolled_back"),
        w.fail("out of stock", "FatalError", status="rolled_back", data={"paid": True}),
    ]


def completed_run(run_id: str, workflow: str = "order-process", t0: float = T0) -> list[dict[str, Any]]:
    w = RunWriter(run_id, workflow, t0=t0)
    return [
        w.start({"n": 1}),
        w.step_start("fetch"),
        w.complete("fetch", 1, {"a": 1}),
        w.step_start("payment"),
        w.complete("payment", 2, {"a": 1, "b": 2}),
        w.finish({"a": 1, "b": 2}),
    ]
