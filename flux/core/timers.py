"""Durable time in the run machine: sleeps, waits with a timeout, wake-ups and deadlines
(SPEC §10).

A step that returns `Flux.sleep(...)` or `Flux.wait(..., timeout=)` becomes `suspended` with
the run's `wake_at` (and `timer`, what happens then). A sleep that ends within the plan's
`inline_sleep` is slept in this process (`Pause`), the run still held and `running`; any
other is stored `suspended` and released, for whichever process works the storage to take
when it is due (`Woke`). A run past its `deadline` is cancelled (the cancel path of §9).
A parent waiting for its `.call` child is made due by the storage when the child ends
(`timer` "child"): its call step then runs again and reads the child's outcome (§11).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import SignalTimeoutError
from ..events import EventType as E
from ..events import timestamp_ms
from ..records import RunRecord, StepRecord
from ..status import RunStatus, StepStatus, check_run, check_step
from . import saga
from .messages import AttemptEnded, Done, Effect, Hook, Invoke, Log, Outputs, Pause, Save
from .plan import Plan, StepPlan
from .saga import Memo
from .trace import emit

R = RunStatus
S = StepStatus

SLEEP = "sleep"
TIMEOUT = "timeout"
DEFAULT = "default:"
CHILD = "child"


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def start_meta(run: RunRecord, plan: Plan) -> dict[str, Any]:
    """`meta` of the run's `workflow:start`: the definition, and its deadline (epoch ms)."""
    meta = plan.meta()
    if run.deadline is not None:
        meta["deadline"] = timestamp_ms(run.deadline)
    return meta


def check_deadline(run: RunRecord, now: float) -> None:
    """A run past its deadline is to be cancelled: record why, as `engine.cancel` would."""
    if (
        run.deadline is not None
        and now >= run.deadline
        and run.cancel_reason is None
        and run.status in (R.PENDING, R.RUNNING, R.SUSPENDED)
    ):
        run.cancel_reason = f"run '{run.id}' ({run.name}) passed its deadline ({iso(run.deadline)})"


def clear(run: RunRecord) -> None:
    run.wake_at = None
    run.timer = None


def requested(
    run: RunRecord, plan: Plan, sp: StepPlan, rec: StepRecord, ev: AttemptEnded, now: float, memo: Memo,
    out: list[Effect],
) -> None:  # fmt: skip
    """The attempt returned a sleep or a wait with a timeout: suspend the step until then."""
    from .machine import attempt_ended

    timer = ev.timer
    assert timer is not None and ev.data_json is not None
    wake = timer.until if timer.until is not None else now + (timer.seconds or 0.0)
    base = {"stepName": sp.name, "stepIndex": sp.index}
    if timer.kind == SLEEP and wake <= now:  # a moment already past: the step goes on at once
        emit(out, run, plan, now, E.STEP_SLEEP, {**base, "wakeAt": timestamp_ms(wake), "status": "suspended"})
        emit(out, run, plan, now, E.STEP_WAKE, {**base, "status": "running"})
        attempt_ended(run, plan, AttemptEnded(sp.name, ev.duration, "null", ev.data_json), now, memo, out)
        return
    run.data_json = ev.data_json
    rec.status = check_step(rec.status, S.SUSPENDED)
    rec.waiting_for = timer.signal
    run.wake_at = wake
    if timer.kind == SLEEP:
        run.timer = SLEEP
    else:
        run.timer = TIMEOUT if timer.default_json is None else DEFAULT + timer.default_json
    # Only a sleep is slept in-process: a wait must stay reachable by a signal from anywhere.
    inline = timer.kind == SLEEP and wake - now <= plan.inline_sleep
    if not inline:
        run.status = check_run(run.status, R.SUSPENDED)
        run.waiting_for = timer.signal
    out.append(Save((sp.name,)))
    if timer.kind == SLEEP:
        emit(out, run, plan, now, E.STEP_SLEEP, {**base, "wakeAt": timestamp_ms(wake), "status": "suspended"})
        out.append(Log("info", f"sleeping until {iso(wake)}", sp.name))
    else:
        emit(out, run, plan, now, E.STEP_SUSPEND, {**base, "signal": timer.signal,
             "wakeAt": timestamp_ms(wake), "status": "suspended"})  # fmt: skip
        out.append(Log("info", f"suspended, waiting for signal '{timer.signal}' until {iso(wake)}", sp.name))
    if inline:
        out.append(Pause(sp.name, wake if run.deadline is None else min(wake, run.deadline)))
    else:
        out.append(Done())


def rearm(run: RunRecord, plan: Plan, rec: StepRecord, now: float, memo: Memo, out: list[Effect]) -> None:
    """A run taken over while it slept in a process that died: its wake time stands."""
    assert run.wake_at is not None
    if now >= run.wake_at or run.cancel_reason is not None:
        woke(run, plan, now, memo, out)
        return
    until = run.wake_at if run.deadline is None else min(run.wake_at, run.deadline)
    if until - now <= plan.inline_sleep:
        out.append(Save((rec.name,)))
        out.append(Pause(rec.name, until))
        return
    run.status = check_run(run.status, R.SUSPENDED)
    run.waiting_for = rec.waiting_for
    out.append(Save((rec.name,)))
    out.append(Done())


def woke(run: RunRecord, plan: Plan, now: float, memo: Memo, out: list[Effect]) -> None:
    """The run (held by this process) is due: its step wakes, times out, or the run is
    cancelled at its deadline."""
    from .machine import next_step

    check_deadline(run, now)
    rec = next((r for r in run.steps if r.status is S.SUSPENDED), None)
    if run.cancel_reason is not None:
        if run.status is R.SUSPENDED:
            run.status = check_run(run.status, R.RUNNING)
        saga.cancel(run, plan, now, memo, out)
        return
    if rec is not None and run.timer == CHILD:
        child_ended(run, plan, rec, now, out)
        return
    if rec is None or run.wake_at is None or now < run.wake_at:
        # Not due after all (taken at a deadline that is not yet past, or a stale wake-up):
        # the run rests as it was.
        if run.status is R.RUNNING and rec is not None:
            run.status = check_run(run.status, R.SUSPENDED)
            run.waiting_for = rec.waiting_for
        out.append(Save())
        out.append(Done())
        return
    sp = plan.by_name[rec.name]
    timer, signal, wake = run.timer or SLEEP, rec.waiting_for, run.wake_at
    clear(run)
    run.waiting_for = None
    if run.status is R.SUSPENDED:
        run.status = check_run(run.status, R.RUNNING)
    base = {"stepName": sp.name, "stepIndex": sp.index}
    if timer == TIMEOUT:
        exc = SignalTimeoutError(
            f"step '{sp.name}' of run '{run.id}' ({run.name}): no signal '{signal}' arrived before "
            f"its timeout ({iso(wake)})"
        )
        if plan.traced:
            emit(out, run, plan, now, E.SIGNAL_TIMEOUT, {**base, "signal": signal,
                 "wakeAt": timestamp_ms(wake), "error": str(exc), "errorType": "SignalTimeoutError",
                 "status": "failed"})  # fmt: skip
        rec.waiting_for = None
        saga.fail_step(run, plan, rec, exc, 0.0, None, now, memo, out)
        return
    output_json = "null" if timer == SLEEP else timer[len(DEFAULT) :]
    rec.status = check_step(rec.status, S.COMPLETED)
    rec.output_json = output_json
    rec.completed_at = now
    rec.waiting_for = None
    out.append(Outputs({rec.name: output_json}))
    out.append(Save((rec.name,)))
    if timer == SLEEP:
        emit(out, run, plan, now, E.STEP_WAKE, {**base, "status": "completed"})
    else:
        emit(out, run, plan, now, E.SIGNAL_TIMEOUT, {**base, "signal": signal, "wakeAt": timestamp_ms(wake),
             "status": "completed"}, {"output": output_json})  # fmt: skip
    if "step_complete" in plan.hooks:
        out.append(Hook("step_complete", rec.name, rec.attempts))
    next_step(run, plan, now, memo, out, sp.index + 1)


def child_ended(run: RunRecord, plan: Plan, rec: StepRecord, now: float, out: list[Effect]) -> None:
    """The child that the call step `rec` waits for has ended (the storage made the run due
    in the write that ended it): the step runs again, as the same attempt, to read it."""
    sp = plan.by_name[rec.name]
    clear(run)
    run.waiting_for = None
    if run.status is R.SUSPENDED:
        run.status = check_run(run.status, R.RUNNING)
    rec.status = check_step(rec.status, S.RUNNING)
    rec.waiting_for = None
    emit(out, run, plan, now, E.STEP_WAKE, {"stepName": sp.name, "stepIndex": sp.index, "status": "running"})
    out.append(Invoke(sp.name, "handler", rec.attempts, sp.timeout, sp.index))
