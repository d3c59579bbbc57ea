"""Drives one run through its steps: attempts, retries, timeouts, suspension and saga.

The engine builds a `RunDriver` for a run it holds (created, resumed, signalled or
retried) and awaits `drive(start)`. Every state change goes through `status.check_*`;
each finished step is one `save_run` of the run row and that step's row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import threading
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import serialization as ser
from .backoff import Backoff
from .builder import StepDefinition, Workflow
from .context import StepExecution, WorkflowContext
from .errors import CommitInterruptedError, FatalError, SerializationError, StepError, StepTimeoutError
from .records import RunRecord, StepRecord
from .signals import WaitRequest
from .status import STEP_DONE, RunStatus, StepStatus, check_run, check_step

if TYPE_CHECKING:
    from .engine import FluxEngine

S = StepStatus
R = RunStatus


_PLAIN = frozenset({str, int, float, bool, type(None)})
DONE = "done"
SUSPENDED = "suspended"


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def may_retry(exc: BaseException, sdef: StepDefinition[Any], tries: int, max_retries: int) -> bool:
    """Whether an attempt that raised `exc` (after `tries` attempts) is tried again: a step's
    and a compensation's attempts follow the same rule."""
    return (
        not isinstance(exc, (FatalError, SerializationError))
        and tries <= max_retries
        and (sdef.retry_on is None or isinstance(exc, sdef.retry_on))
    )


def stored_outputs(steps: list[StepRecord]) -> dict[str, Any]:
    """Step name → output, decoded, for the steps that completed."""
    return {
        s.name: ser.loads(s.output_json)
        for s in steps
        if s.status is S.COMPLETED and s.output_json is not None
    }


def as_utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def build_history(steps: list[StepRecord], outputs: dict[str, Any]) -> list[StepExecution]:
    out = []
    for rec in steps:
        duration = (
            rec.completed_at - rec.started_at
            if rec.completed_at is not None and rec.started_at is not None
            else None
        )
        out.append(
            StepExecution(
                name=rec.name,
                status=rec.status,
                attempts=rec.attempts,
                started_at=as_utc(rec.started_at),
                completed_at=as_utc(rec.completed_at),
                duration=duration,
                output=outputs.get(rec.name),
                error=rec.error,
                error_type=rec.error_type,
                commit=rec.kind == "commit",
            )
        )
    return out


class RunDriver:
    def __init__(self, engine: FluxEngine, flow: Workflow[Any], run: RunRecord, input: Any) -> None:
        self.engine = engine
        self.flow = flow
        self.run = run
        self.input = input
        self.data: dict[str, Any] = ser.loads(run.data_json)
        self.outputs: dict[str, Any] = stored_outputs(run.steps)
        self.outputs_view = MappingProxyType(self.outputs)
        self.owner: str | None = engine.owner
        self.trace = engine.trace
        self.reserved: list[int] = []
        #: Steps that a restart put back to pending: saved with the restart.
        self.reset: list[int] = []
        self.emit_raw: Callable[[dict[str, Any], dict[str, str]], None] | None = getattr(
            self.trace, "emit_raw", None
        )

    # ----------------------------------------------------------------- plumbing

    def emit(self, kind: str, fields: dict[str, Any], raw: dict[str, str] | None = None) -> None:
        """Send a trace event; `raw` holds values already encoded as JSON text, which a
        sink that can splice them (`emit_raw`) writes without decoding them again."""
        if self.trace is None:
            return
        run = self.run
        if self.reserved:
            seq = self.reserved.pop(0)
        else:
            run.seq += 1
            seq = run.seq
        event = {
            "v": 1,
            "seq": seq,
            "type": kind,
            "timestamp": time.time() * 1000,
            "workflowId": run.id,
            "workflowName": run.name,
            **fields,
        }
        try:
            if raw is None:
                self.trace.emit(event)
            elif self.emit_raw is not None:
                self.emit_raw(event, raw)
            else:
                event.update({key: ser.loads_plain(text) for key, text in raw.items()})
                self.trace.emit(event)
        except Exception as exc:  # a sink never fails a run
            self.engine.logger.error(f"trace sink failed: {exc!r}", run=run.id, workflow=run.name, exc=exc)

    def emit_start(self) -> None:
        self.emit(
            "workflow:start", {"status": "running", "meta": self.meta()}, {"input": self.run.input_json}
        )

    def emit_resume(self, from_step: str, reason: str) -> None:
        meta = {**self.meta(), "fromStep": from_step, "reason": reason}
        self.emit("workflow:resume", {"status": "running", "meta": meta})

    def meta(self) -> dict[str, Any]:
        """The definition as the viewer draws it: steps in order, commits marked."""
        steps = [{"name": s.name, "commit": s.kind == "commit"} for s in self.flow.steps]
        return {"steps": steps, "version": self.flow.version_tag}

    def reserve(self, events: int) -> None:
        """Number the events that will follow the run's last save before that save, so
        that a later resume (in any process) goes on from the stored `seq`."""
        if self.trace is not None:
            for _ in range(events):
                self.run.seq += 1
                self.reserved.append(self.run.seq)

    async def save(self, *steps: int) -> None:
        self.run.updated_at = time.time()
        self.run.rev += 1
        await self.engine.storage.save_run(self.run, steps, self.owner)

    def ctx(
        self,
        step: str,
        attempt: int,
        data: dict[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> WorkflowContext[Any]:
        return WorkflowContext(
            id=self.run.id,
            name=self.run.name,
            input=self.input,
            data=self.data if data is None else data,
            outputs=self.outputs_view,
            step_name=step,
            attempt=attempt,
            history=self.history,
            cancel=cancel,
        )

    def history(self) -> list[StepExecution]:
        return build_history(self.run.steps, self.outputs)

    def restore_data(self) -> None:
        """Discard a failed attempt's changes: back to the last stored data."""
        self.data = ser.loads(self.run.data_json)

    def set_status(self, status: RunStatus) -> None:
        self.run.status = check_run(self.run.status, status)

    # ----------------------------------------------------------------- the run

    async def drive(self, start: int) -> None:
        steps = self.flow.steps
        records = self.run.steps
        i = start
        while i < len(steps):
            rec = records[i]
            if rec.status in STEP_DONE:
                i += 1
                continue
            if rec.status is S.RUNNING and rec.kind == "commit":
                exc = CommitInterruptedError(
                    f"commit '{rec.name}' of run '{self.run.id}' ({self.run.name}) started but its "
                    "end was not recorded: it may have happened. Use retry_step to run it again "
                    "with the same idempotency key."
                )
                self.fail_step(rec, exc)
                self.emit("step:error", self.error_fields(i, rec, exc, 0.0))
                await self.fail(i, exc)
                return
            outcome = await self.run_step(i, steps[i], rec)
            if isinstance(outcome, BaseException):
                await self.fail(i, outcome)
                return
            if outcome is SUSPENDED:
                return
            i += 1
        await self.complete()

    async def run_step(self, i: int, sdef: StepDefinition[Any], rec: StepRecord) -> BaseException | str:
        """Run one step to its end: DONE when completed or skipped, SUSPENDED, or the
        error when it failed for good."""
        engine = self.engine
        if sdef.when is not None and rec.status is S.PENDING:
            try:
                go: Any = sdef.when(self.ctx(sdef.name, rec.attempts + 1))
                if inspect.isawaitable(go):
                    go = await go
            except Exception as exc:
                rec.status = check_step(rec.status, S.RUNNING)
                self.fail_step(rec, exc)
                self.emit("step:error", self.error_fields(i, rec, exc, 0.0))
                await engine.call_hook("step_error", sdef.name, self.ctx(sdef.name, 1), exc)
                return exc
            if not go:
                rec.status = check_step(rec.status, S.SKIPPED)
                rec.completed_at = time.time()
                await self.save(i)
                self.emit("step:skipped", {"stepName": sdef.name, "stepIndex": i, "status": "skipped"})
                return DONE
        max_retries, timeout, backoff = self.policy(sdef)
        commit = sdef.kind == "commit"
        if rec.started_at is None:
            rec.started_at = time.time()
            rec.data_before = self.run.data_json
        first = rec.attempts
        while True:
            rec.attempts += 1
            attempt = rec.attempts
            rec.status = check_step(rec.status, S.RUNNING)
            if commit:
                await self.save(i)  # at-most-once: the start is durable before the call
            if self.trace is not None:
                self.emit("step:start", {"stepName": sdef.name, "stepIndex": i, "commit": commit,
                                         "attempt": attempt, "maxRetries": max_retries})  # fmt: skip
            ctx = None
            started = time.perf_counter()
            try:
                ctx, result = await self.attempt(
                    sdef.handler, sdef.is_async, sdef.name, attempt, timeout, hook=True
                )
                if not isinstance(ctx.data, dict):
                    raise SerializationError(
                        f"ctx.data must stay a dict in step '{sdef.name}', got {type(ctx.data).__name__}",
                        path="data",
                        step=sdef.name,
                    )
                if isinstance(result, WaitRequest):
                    return await self.suspend(i, rec, ctx, result)
                output_json = ser.dumps(result, path=f"outputs.{sdef.name}", step=sdef.name)
                data_json = ser.dumps(ctx.data, path="data", step=sdef.name)
            except Exception as exc:
                duration = time.perf_counter() - started
                self.restore_data()
                if may_retry(exc, sdef, attempt - first, max_retries):
                    self.emit(
                        "step:retry",
                        {
                            **self.error_fields(i, rec, exc, duration),
                            "retries": attempt - first,
                            "maxRetries": max_retries,
                        },
                    )
                    engine.logger.warn(
                        f"attempt {attempt} failed: {_error_text(exc)}; retrying",
                        workflow=self.run.name,
                        run=self.run.id,
                        step=sdef.name,
                    )
                    await asyncio.sleep(backoff.delay(attempt - first))
                    continue
                self.fail_step(rec, exc)
                self.emit("step:error", self.error_fields(i, rec, exc, duration))
                await engine.call_hook("step_error", sdef.name, ctx or self.ctx(sdef.name, attempt), exc)
                return exc
            duration = time.perf_counter() - started
            # What later steps see is what a resumed run would read back from storage:
            # tuples become lists, and so on, the same with every storage and after a crash.
            self.data = ser.loads(data_json)
            result = ser.loads(output_json) if type(result) not in _PLAIN else result
            self.outputs[sdef.name] = result
            rec.status = check_step(rec.status, S.COMPLETED)
            rec.output_json = output_json
            rec.completed_at = time.time()
            rec.error = rec.error_type = None
            self.run.data_json = data_json
            if i == len(self.flow.steps) - 1:
                self.mark_completed()  # the last step and the run's end: one write
                self.reserve(2)  # step:complete, workflow:complete
            await self.save(i)
            if self.trace is not None:
                self.emit(
                    "step:complete",
                    {"stepName": sdef.name, "stepIndex": i, "commit": commit, "attempt": attempt,
                     "duration": duration * 1000, "status": "completed"},
                    {"output": output_json, "data": data_json},
                )  # fmt: skip
            if engine.hooks:
                await engine.call_hook("step_complete", sdef.name, ctx, result)
            return DONE

    async def attempt(
        self,
        fn: Callable[..., Any],
        is_async: bool,
        step: str,
        attempt: int,
        timeout: float | None,
        *,
        hook: bool = False,
    ) -> tuple[WorkflowContext[Any], Any]:
        """Call `fn` once under the step's timeout (`flux.attempts`); return the context it
        ran with (its `data` is the data to keep if the attempt succeeded) and its result."""
        if timeout is None:
            ctx = self.ctx(step, attempt)
            cancel = None
        else:
            # Under a timeout the handler may be abandoned: it works on its own copy of the
            # data, so that an abandoned attempt's late writes land nowhere.
            cancel = threading.Event()
            ctx = self.ctx(step, attempt, data=ser.loads(self.run.data_json), cancel=cancel)
        if hook and self.engine.hooks:
            await self.engine.call_hook("step_start", step, ctx)
        result = await self.engine.attempts.call(
            fn,
            ctx,
            is_async=is_async,
            timeout=timeout,
            cancel=cancel,
            key=(self.run.id, step),
            timeout_error=lambda: self.timeout_error(step, attempt, timeout or 0.0),
        )
        return ctx, result

    def timeout_error(self, step: str, attempt: int, timeout: float) -> StepTimeoutError:
        return StepTimeoutError(
            f"step '{step}' of run '{self.run.id}' ({self.run.name}) timed out after "
            f"{timeout:g}s (attempt {attempt})"
        )

    def policy(self, sdef: StepDefinition[Any]) -> tuple[int, float | None, Backoff]:
        """The step's retries, timeout and backoff, the engine's where the step sets none."""
        engine = self.engine
        return (
            engine.default_retries if sdef.retries is None else sdef.retries,
            engine.default_timeout if sdef.timeout is None else sdef.timeout,
            sdef.backoff or engine.default_backoff,
        )

    def fail_step(self, rec: StepRecord, exc: BaseException) -> None:
        rec.status = check_step(rec.status, S.FAILED)
        rec.completed_at = time.time()
        rec.error = _error_text(exc)
        rec.error_type = type(exc).__name__

    def error_fields(self, i: int, rec: StepRecord, exc: BaseException, duration: float) -> dict[str, Any]:
        return {
            "stepName": rec.name,
            "stepIndex": i,
            "commit": rec.kind == "commit",
            "attempt": rec.attempts,
            "duration": duration * 1000,
            "error": _error_text(exc),
            "errorType": type(exc).__name__,
        }

    async def suspend(self, i: int, rec: StepRecord, ctx: WorkflowContext[Any], wait: WaitRequest) -> str:
        data_json = ser.dumps(ctx.data, path="data", step=rec.name)
        self.data = ser.loads(data_json)
        self.run.data_json = data_json
        rec.status = check_step(rec.status, S.SUSPENDED)
        rec.waiting_for = wait.signal
        self.set_status(R.SUSPENDED)
        self.run.waiting_for = wait.signal
        self.reserve(1)
        await self.save(i)
        self.emit(
            "step:suspend",
            {"stepName": rec.name, "stepIndex": i, "signal": wait.signal, "status": "suspended"},
        )
        self.engine.logger.info(
            f"suspended, waiting for signal '{wait.signal}'",
            workflow=self.run.name,
            run=self.run.id,
            step=rec.name,
        )
        return SUSPENDED

    async def deliver(self, i: int, payload: Any, payload_json: str, *, enqueue: bool = False) -> None:
        """Complete the suspended step `i` with a signal's payload and go on (or, with
        `enqueue`, leave the run pending for a worker)."""
        rec = self.run.steps[i]
        signal = rec.waiting_for
        rec.status = check_step(rec.status, S.COMPLETED)
        rec.output_json = payload_json
        rec.completed_at = time.time()
        rec.waiting_for = None
        self.outputs[rec.name] = payload
        self.set_status(R.PENDING if enqueue else R.RUNNING)
        self.run.waiting_for = None
        if enqueue:
            self.reserve(1)
        await self.save(i)
        self.emit(
            "signal:received",
            {"stepName": rec.name, "stepIndex": i, "signal": signal},
            {"output": payload_json},
        )
        await self.engine.call_hook("step_complete", rec.name, self.ctx(rec.name, rec.attempts), payload)
        if not enqueue:
            await self.drive(i + 1)

    def mark_completed(self) -> None:
        self.set_status(R.COMPLETED)
        self.run.completed_at = time.time()
        self.run.error = self.run.error_type = self.run.error_step = None

    async def complete(self) -> None:
        if self.run.status is not R.COMPLETED:  # else saved with the last step
            self.mark_completed()
            self.reserve(1)
            await self.save()
        self.emit(
            "workflow:complete",
            {"status": "completed", "duration": self.duration_ms()},
            {"data": self.run.data_json},
        )
        self.engine.logger.info("completed", workflow=self.run.name, run=self.run.id)
        await self.engine.call_hook("workflow_complete", self.ctx("", 0))

    def duration_ms(self) -> float:
        return ((self.run.completed_at or time.time()) - self.run.created_at) * 1000

    # ----------------------------------------------------------------- failure and saga

    async def fail(self, i: int, exc: BaseException) -> None:
        run = self.run
        run.error = _error_text(exc)
        run.error_type = type(exc).__name__
        run.error_step = run.steps[i].name
        self.engine.logger.error(
            f"step failed for good: {run.error}",
            workflow=run.name,
            run=run.id,
            step=run.error_step,
            # the traceback of an unexpected error; a business error or a timeout says it all
            exc=None if isinstance(exc, StepError) else exc,
        )
        todo = [] if isinstance(exc, CommitInterruptedError) else self.to_compensate(i)
        if not todo:
            self.set_status(R.FAILED)
            run.completed_at = time.time()
            self.reserve(1)  # workflow:error
            await self.save(i)
            await self.finish_error(exc)
            return
        self.set_status(R.ROLLING_BACK)
        await self.save(i)
        self.emit("workflow:rollback_start", {"status": "rolling_back", "stepName": run.error_step})
        await self.rollback(todo, exc)

    def to_compensate(self, failed: int) -> list[int]:
        """The steps before `failed` to compensate, latest first (a compensation cut short
        by a crash is done again)."""
        steps, records = self.flow.steps, self.run.steps
        return [
            j
            for j in range(failed - 1, -1, -1)
            if records[j].status in (S.COMPLETED, S.COMPENSATING) and steps[j].compensate is not None
        ]

    async def rollback(self, todo: list[int], exc: BaseException) -> None:
        ok = True
        for j in todo:
            ok = await self.compensate(j) and ok
        self.set_status(R.ROLLED_BACK if ok else R.ROLLBACK_FAILED)
        self.run.completed_at = time.time()
        self.reserve(2)  # workflow:rollback_complete, workflow:error
        await self.save()
        self.emit("workflow:rollback_complete", {"status": self.run.status.value})
        await self.finish_error(exc)

    async def finish_error(self, exc: BaseException) -> None:
        run = self.run
        self.emit(
            "workflow:error",
            {
                "status": run.status.value,
                "error": run.error,
                "errorType": run.error_type,
                "stepName": run.error_step,
                "duration": self.duration_ms(),
            },
            {"data": run.data_json},
        )
        await self.engine.call_hook("workflow_error", self.ctx("", 0), exc)

    async def compensate(self, j: int) -> bool:
        sdef = self.flow.steps[j]
        rec = self.run.steps[j]
        assert sdef.compensate is not None
        max_retries, timeout, backoff = self.policy(sdef)
        if rec.status is S.COMPLETED:
            rec.status = check_step(rec.status, S.COMPENSATING)
            await self.save(j)
        first = rec.compensation_attempts
        while True:
            rec.compensation_attempts += 1
            attempt = rec.compensation_attempts
            started = time.perf_counter()
            try:
                ctx, _ = await self.attempt(
                    sdef.compensate, sdef.compensate_is_async, sdef.name, attempt, timeout
                )
                data_json = ser.dumps(ctx.data, path="data", step=sdef.name)
            except Exception as exc:
                duration = time.perf_counter() - started
                self.restore_data()
                fields = {**self.error_fields(j, rec, exc, duration), "attempt": attempt}
                if may_retry(exc, sdef, attempt - first, max_retries):
                    self.emit("step:compensate_error", fields)
                    await asyncio.sleep(backoff.delay(attempt - first))
                    continue
                rec.status = check_step(rec.status, S.COMPENSATION_FAILED)
                rec.error = f"compensation failed: {_error_text(exc)}"
                await self.save(j)
                self.emit("step:compensate_error", {**fields, "status": "compensation_failed"})
                self.engine.logger.error(
                    f"compensation failed for good: {_error_text(exc)}",
                    workflow=self.run.name,
                    run=self.run.id,
                    step=sdef.name,
                    exc=None if isinstance(exc, StepError) else exc,
                )
                return False
            self.data = ser.loads(data_json)
            self.run.data_json = data_json
            rec.status = check_step(rec.status, S.COMPENSATED)
            rec.compensated_at = time.time()
            self.outputs.pop(sdef.name, None)
            await self.save(j)
            self.emit(
                "step:compensate",
                {
                    "stepName": sdef.name,
                    "stepIndex": j,
                    "attempt": attempt,
                    "duration": (time.perf_counter() - started) * 1000,
                    "status": "compensated",
                },
            )
            return True
