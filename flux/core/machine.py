"""The forward path of a run: start, resume, attempts, retries, skips, suspension, signals.

`decide` is the machine's one entry point. It updates the `RunRecord` it is given (the
run's state: every change goes through the transition table of `flux.status`) and returns
the effects to carry out, in order. Failure, compensation and cancellation are in
`flux.core.saga`.
"""

from __future__ import annotations

from ..errors import (
    CommitInterruptedError,
    FatalError,
    InputValidationError,
    RunConflictError,
    SerializationError,
    StepCrashedError,
    WorkflowDefinitionError,
    WorkflowVersionError,
)
from ..events import EventType as E
from ..records import RunRecord, StepRecord
from ..status import STEP_DONE, RunStatus, StepStatus, check_run, check_step
from . import groups, saga, timers
from .messages import (
    AttemptEnded,
    BackoffEnded,
    CancelNow,
    CompensationEnded,
    Done,
    Effect,
    Event,
    Hook,
    Invoke,
    ItemsEnded,
    Log,
    Outputs,
    Proceed,
    Proceeded,
    Resumed,
    RetryFrom,
    Save,
    SaveFailed,
    Signalled,
    Started,
    Wait,
    WhenEnded,
    Woke,
)
from .plan import Plan, StepPlan
from .saga import Memo
from .trace import emit, error_fields, error_text

R = RunStatus
S = StepStatus


def _start_meta(run: RunRecord, plan: Plan) -> dict[str, object]:
    """The `meta` of a run's `workflow:start` (`timers.start_meta`: the definition, the
    deadline); a run a schedule started also says which slot."""
    meta = timers.start_meta(run, plan)
    if run.schedule is not None:
        meta["schedule"] = {"id": run.schedule[0], "slot": run.schedule[1]}
    return meta


def _start_fields(run: RunRecord, plan: Plan) -> dict[str, object]:
    """A run's `workflow:start`: a child run also names its parent and the parent's step."""
    fields: dict[str, object] = {"status": "running", "meta": _start_meta(run, plan)}
    if run.parent_id is not None:
        fields["parentId"] = run.parent_id
        fields["parentStep"] = run.id[len(run.parent_id) + 1 :]
    return fields


def decide(run: RunRecord, plan: Plan, event: Event, now: float, memo: Memo) -> list[Effect]:
    out: list[Effect] = []
    kind = type(event)
    if run.deadline is not None and kind not in _BACK:
        timers.check_deadline(run, now)
    if kind is AttemptEnded:
        _attempt_ended(run, plan, event, now, memo, out)  # type: ignore[arg-type]
    elif kind is Started:
        if plan.traced:
            emit(out, run, plan, now, E.WORKFLOW_START, _start_fields(run, plan),
                 {"input": run.input_json})  # fmt: skip
        _next_step(run, plan, now, memo, out)
    elif kind is Woke:
        timers.woke(run, plan, now, memo, out)
    elif kind is WhenEnded:
        _when_ended(run, plan, event, now, memo, out)  # type: ignore[arg-type]
    elif kind is BackoffEnded:
        assert isinstance(event, BackoffEnded)
        if event.compensation:
            saga.compensate_again(run, plan, event.step, now, memo, out)
        elif (sp := plan.of(event.step)).group is not None:
            groups.backoff_ended(run, plan, sp, now, memo, out)
        elif run.cancel_reason is not None:
            saga.cancel(run, plan, now, memo, out)
        else:
            _attempt(run, plan, sp, now, out)
    elif kind is CompensationEnded:
        saga.compensation_ended(run, plan, event, now, memo, out)  # type: ignore[arg-type]
    elif kind is Resumed:
        _resumed(run, plan, event, now, memo, out)  # type: ignore[arg-type]
    elif kind is Signalled:
        _signalled(run, plan, event, now, memo, out)  # type: ignore[arg-type]
    elif kind is RetryFrom:
        _retry_from(run, plan, event, now, memo, out)  # type: ignore[arg-type]
    elif kind is Proceeded:
        assert isinstance(event, Proceeded)
        if (sp := plan.of(event.step)).group is not None:
            groups.proceeded(run, plan, sp, now, memo, out)
        else:
            _attempt(run, plan, sp, now, out)
    elif kind is ItemsEnded:
        groups.items_ended(run, plan, event, now, memo, out)  # type: ignore[arg-type]
    elif kind is CancelNow:
        saga.cancel(run, plan, now, memo, out)
    elif kind is SaveFailed:
        assert isinstance(event, SaveFailed)
        saga.save_failed(run, plan, event.error, now, memo, out)
    else:  # pragma: no cover - a new event type without a row here is a bug
        raise TypeError(f"run machine: unknown event {event!r}")
    return out


#: Events on the way back (or that bring a cancel themselves): a deadline does not interrupt them.
_BACK = frozenset({CompensationEnded, CancelNow, SaveFailed})


def record(run: RunRecord, name: str) -> StepRecord:
    for rec in run.steps:
        if rec.name == name:
            return rec
    raise KeyError(name)


def may_retry(exc: BaseException, sp: StepPlan, tries: int) -> bool:
    """Whether an attempt that raised `exc`, after `tries` failed attempts, is tried again:
    steps and compensations follow the same rule."""
    return (
        not isinstance(
            exc,
            (
                FatalError,
                SerializationError,
                WorkflowDefinitionError,
                WorkflowVersionError,
                InputValidationError,
                RunConflictError,  # a child's id taken by another run: it stays taken
            ),
        )
        and tries <= sp.retries
        and (sp.retry_on is None or isinstance(exc, sp.retry_on))
    )


# ---------------------------------------------------------------------- the forward path


def _next_step(run: RunRecord, plan: Plan, now: float, memo: Memo, out: list[Effect], start: int = 0) -> None:
    """Start the first step (from `start`, all before it being done) that is not done, or
    end the run."""
    steps, records = plan.steps, run.steps
    for i in range(start, len(steps)):
        sp, rec = steps[i], records[i]
        if rec.status in STEP_DONE or sp.group is not None:  # a group starts its own members
            continue
        if run.cancel_reason is not None:
            saga.cancel(run, plan, now, memo, out)
            return
        if sp.kind == "parallel" or sp.kind == "map":
            groups.start(run, plan, sp, now, memo, out)
            return
        if rec.status is S.RUNNING and sp.commit:
            exc = CommitInterruptedError(
                f"commit '{rec.name}' of run '{run.id}' ({run.name}) started but its end was not "
                "recorded: it may have happened. Use retry_step to run it again with the same "
                "idempotency key."
            )
            saga.fail_step(run, plan, rec, exc, 0.0, None, now, memo, out)
            return
        if sp.has_when and rec.status is S.PENDING:
            out.append(Invoke(sp.name, "when", rec.attempts + 1, None, sp.index))
            return
        _attempt(run, plan, sp, now, out)
        return
    _complete(run, plan, now, memo, out)


def _attempt(run: RunRecord, plan: Plan, sp: StepPlan, now: float, out: list[Effect]) -> None:
    if sp.commit and any(type(e) is Save for e in out):
        out.append(Proceed(sp.name))
        return
    rec = run.steps[sp.index]
    if rec.started_at is None:
        rec.started_at = now
        rec.data_before = run.data_json
    rec.attempts += 1
    rec.status = check_step(rec.status, S.RUNNING)
    if sp.commit:
        out.append(Save((sp.name,)))  # at-most-once: the start is durable before the call
    if plan.traced:
        emit(out, run, plan, now, E.STEP_START, {"stepName": sp.name, "stepIndex": sp.index,
             "commit": sp.commit, "attempt": rec.attempts, "maxRetries": sp.retries})  # fmt: skip
    out.append(Invoke(sp.name, "handler", rec.attempts, sp.timeout, sp.index))


def _when_ended(run: RunRecord, plan: Plan, ev: WhenEnded, now: float, memo: Memo, out: list[Effect]) -> None:
    sp = plan.by_name[ev.step]
    if sp.group is not None:
        groups.when_ended(run, plan, sp, ev, now, memo, out)
        return
    rec = run.steps[sp.index]
    if ev.error is not None:
        rec.status = check_step(rec.status, S.RUNNING)
        saga.fail_step(run, plan, rec, ev.error, 0.0, None, now, memo, out)
        return
    if not ev.go:
        rec.status = check_step(rec.status, S.SKIPPED)
        rec.completed_at = now
        out.append(Save((sp.name,)))
        emit(out, run, plan, now, E.STEP_SKIPPED, {"stepName": sp.name, "stepIndex": sp.index,
             "status": "skipped"})  # fmt: skip
        _next_step(run, plan, now, memo, out)
        return
    _attempt(run, plan, sp, now, out)


def _attempt_ended(
    run: RunRecord, plan: Plan, ev: AttemptEnded, now: float, memo: Memo, out: list[Effect]
) -> None:
    sp = plan.by_name.get(ev.step) or plan.of(ev.step)
    if sp.group is not None:
        groups.member_ended(run, plan, sp, ev, now, memo, out)
        return
    rec = run.steps[sp.index]
    if ev.error is not None:
        exc = ev.error
        if run.cancel_reason is not None:
            saga.cancel(run, plan, now, memo, out)  # it marks the step cancelled, and stores it
            return
        tries = rec.attempts - rec.crashes
        if may_retry(exc, sp, tries):
            if plan.traced:
                fields = error_fields(sp, rec, exc, ev.duration, ev.stack)
                fields["retries"] = tries
                fields["maxRetries"] = sp.retries
                emit(out, run, plan, now, E.STEP_RETRY, fields)
            out.append(Log("warn", f"attempt {rec.attempts} failed: {error_text(exc)}; retrying", sp.name))
            out.append(Wait(sp.name, tries))
            return
        saga.fail_step(run, plan, rec, exc, ev.duration, ev.stack, now, memo, out)
        return
    if ev.timer is not None:
        timers.requested(run, plan, sp, rec, ev, now, memo, out)
        return
    if ev.signal is not None:
        _suspend(run, plan, sp, rec, ev, now, out)
        return
    assert ev.output_json is not None and ev.data_json is not None
    rec.status = check_step(rec.status, S.COMPLETED)
    rec.output_json = ev.output_json
    rec.completed_at = now
    rec.error = rec.error_type = None
    run.data_json = ev.data_json
    # (the driver keeps the output it produced as the step's output: no Outputs effect here)
    last = sp.index == len(plan.steps) - 1
    if last and run.cancel_reason is None:
        _mark_completed(run, now)  # the last step and the run's end: one write
    out.append(sp.save)
    if plan.traced:
        emit(out, run, plan, now, E.STEP_COMPLETE, {"stepName": sp.name, "stepIndex": sp.index,
             "commit": sp.commit, "attempt": rec.attempts, "duration": ev.duration * 1000,
             "status": "completed"}, {"output": ev.output_json, "data": ev.data_json})  # fmt: skip
    if "step_complete" in plan.hooks:
        out.append(Hook("step_complete", sp.name, rec.attempts))
    if last and run.status is R.COMPLETED:
        _finish_completed(run, plan, now, out)
    else:
        _next_step(run, plan, now, memo, out, sp.index + 1)


def _suspend(
    run: RunRecord, plan: Plan, sp: StepPlan, rec: StepRecord, ev: AttemptEnded, now: float, out: list[Effect]
) -> None:
    assert ev.signal is not None and ev.data_json is not None
    run.data_json = ev.data_json
    rec.status = check_step(rec.status, S.SUSPENDED)
    rec.waiting_for = ev.signal
    run.status = check_run(run.status, R.SUSPENDED)
    run.waiting_for = ev.signal
    timers.clear(run)  # a wait with no timeout: due at the deadline only
    out.append(Save((sp.name,)))
    emit(out, run, plan, now, E.STEP_SUSPEND, {"stepName": sp.name, "stepIndex": sp.index,
         "signal": ev.signal, "status": "suspended"})  # fmt: skip
    if sp.kind == "call":
        out.append(Log("info", f"suspended, waiting for child run '{ev.signal[len('child:') :]}'", sp.name))
    else:
        out.append(Log("info", f"suspended, waiting for signal '{ev.signal}'", sp.name))
    out.append(Done())


def _mark_completed(run: RunRecord, now: float) -> None:
    run.status = check_run(run.status, R.COMPLETED)
    run.completed_at = now
    run.error = run.error_type = run.error_step = None


def _complete(run: RunRecord, plan: Plan, now: float, memo: Memo, out: list[Effect]) -> None:
    if run.cancel_reason is not None:
        saga.cancel(run, plan, now, memo, out)
        return
    if run.status is not R.COMPLETED:
        _mark_completed(run, now)
        out.append(Save())
    _finish_completed(run, plan, now, out)


def _finish_completed(run: RunRecord, plan: Plan, now: float, out: list[Effect]) -> None:
    emit(out, run, plan, now, E.WORKFLOW_COMPLETE, {"status": "completed",
         "duration": saga.duration_ms(run, now)}, {"data": run.data_json})  # fmt: skip
    out.append(Log("info", "completed"))
    if "workflow_complete" in plan.hooks:
        out.append(Hook("workflow_complete"))
    out.append(Done())


# ---------------------------------------------------------------------- explicit requests


def _signalled(run: RunRecord, plan: Plan, ev: Signalled, now: float, memo: Memo, out: list[Effect]) -> None:
    rec = next(r for r in run.steps if r.status is S.SUSPENDED)
    signal = rec.waiting_for
    rec.status = check_step(rec.status, S.COMPLETED)
    rec.output_json = ev.payload_json
    rec.completed_at = now
    rec.waiting_for = None
    timers.clear(run)
    out.append(Outputs({rec.name: ev.payload_json}))
    run.status = check_run(run.status, R.PENDING if ev.enqueue else R.RUNNING)
    run.waiting_for = None
    out.append(Save((rec.name,)))
    sp = plan.by_name[rec.name]
    emit(out, run, plan, now, E.SIGNAL_RECEIVED, {"stepName": rec.name, "stepIndex": sp.index,
         "signal": signal}, {"output": ev.payload_json})  # fmt: skip
    if "step_complete" in plan.hooks:
        out.append(Hook("step_complete", rec.name, rec.attempts))
    if ev.enqueue:
        out.append(Done())
    else:
        _next_step(run, plan, now, memo, out)


def _reset_from(
    run: RunRecord, plan: Plan, restart: int, keep: frozenset[int], memo: Memo, *, resume: bool = False
) -> list[str]:
    """Put the steps from `restart` on back to pending (except `keep`); their names. A
    resume that goes on from a group keeps the members that are done (`groups.resume`); any
    other reset of a map drops its items, to be asked for again."""
    changed: list[str] = []
    cut: int | None = None
    for sp in plan.steps[restart:]:
        rec = run.steps[sp.index]
        if sp.index in keep:
            continue
        if resume and sp.index == restart and sp.kind in _GROUPS and rec.started_at is not None:
            changed.extend(groups.resume(run, plan, sp, memo))
            continue
        if (
            resume
            and sp.group is not None
            and sp.group == plan.steps[restart].name
            and rec.status in STEP_DONE
        ):
            continue
        if resume and rec.kind == "commit" and rec.status is S.COMPLETED:
            continue  # a finished commit never runs again on resume (SPEC §5); retry_step may
        if sp.kind == "map":
            base = saga.item_base(run, plan, memo, sp.name)
            if base is not None:
                cut = base if cut is None else min(cut, base)
        fresh = StepRecord(rec.name, rec.kind)
        if rec == fresh:
            continue
        run.steps[sp.index] = fresh
        changed.append(sp.name)
    if cut is not None:  # the items of the maps reset: the last records of the run
        del run.steps[cut:]
        memo.where.clear()
        memo.groups.clear()
    return changed


_GROUPS = frozenset({"parallel", "map"})


def _restart_point(run: RunRecord, upto: int, undone: frozenset[StepStatus]) -> int:
    """The first step before `upto` whose effect was undone (it must run again), else `upto`."""
    for k in range(upto):
        if run.steps[k].status in undone:
            return k
    return upto


_UNDONE = frozenset({S.COMPENSATED, S.COMPENSATION_FAILED})


def _resumed(run: RunRecord, plan: Plan, ev: Resumed, now: float, memo: Memo, out: list[Effect]) -> None:
    if run.status is R.ROLLING_BACK:
        failed = next((r.name for r in run.steps if r.status in (S.FAILED, S.CANCELLED)), run.error_step)
        emit(out, run, plan, now, E.WORKFLOW_RESUME, {"status": "running",
             "meta": {**plan.meta(), "fromStep": failed or "", "reason": ev.reason}})  # fmt: skip
        memo.failure = saga.stored_failure(run)
        saga.next_compensation(run, plan, now, memo, out)
        return
    first = next((i for i, s in enumerate(run.steps) if s.status not in STEP_DONE), len(run.steps))
    if run.wake_at is not None and run.status is R.RUNNING and first < len(run.steps) \
            and run.steps[first].status is S.SUSPENDED:  # fmt: skip
        # taken over from a process that died while it slept: the same wake time stands
        emit(out, run, plan, now, E.WORKFLOW_RESUME, {"status": "running", "meta": {**plan.meta(),
             "fromStep": run.steps[first].name, "reason": ev.reason}})  # fmt: skip
        timers.rearm(run, plan, run.steps[first], now, memo, out)
        return
    restart = _restart_point(run, first, _UNDONE)
    if run.status in (R.ROLLED_BACK, R.ROLLBACK_FAILED, R.FAILED) and restart < len(run.steps):
        before = run.steps[restart].data_before
        if before is not None:
            run.data_json = before
    keep: frozenset[int] = frozenset()
    crashed_step: StepRecord | None = None
    crashed_members: list[str] = []
    if run.status is R.RUNNING and restart == first and first < len(run.steps):
        rec = run.steps[first]
        if first < len(plan.steps) and plan.steps[first].kind in _GROUPS:
            # taken over in the middle of a group: its records stand; the members cut short
            # run again (fill), counted as crashed in the write that takes the run over
            gsp = plan.steps[first]
            keep = frozenset({first, *gsp.members})
            if ev.crashed:
                crashed_members = groups.crashed(run, plan, gsp, memo)
        elif rec.status is S.RUNNING and rec.kind == "commit":
            keep = frozenset({first})  # a commit in flight must be seen as interrupted
        elif ev.crashed and plan.steps[first].kind == "call":
            keep = frozenset({first})  # calling again only looks at the child: no crash to count
        elif ev.crashed:
            keep = frozenset({first})
            crashed_step = rec
    changed = _reset_from(run, plan, restart, keep, memo, resume=True) + crashed_members
    never_started = run.status is R.PENDING and all(s.started_at is None for s in run.steps)
    run.status = check_run(run.status, R.RUNNING)
    run.error = run.error_type = run.error_step = None
    run.completed_at = None
    run.waiting_for = None
    timers.clear(run)
    if changed:
        out.append(Outputs(drop=tuple(changed)))
    if never_started:
        emit(out, run, plan, now, E.WORKFLOW_START, _start_fields(run, plan),
             {"input": run.input_json})  # fmt: skip
    else:
        name = run.steps[restart].name if restart < len(run.steps) else ""
        emit(out, run, plan, now, E.WORKFLOW_RESUME, {"status": "running",
             "meta": {**plan.meta(), "fromStep": name, "reason": ev.reason}})  # fmt: skip
    if crashed_step is not None:
        # The attempt in flight died with its process: it is run again as the next attempt,
        # but not forever. Counted in the write that takes the run over: no extra write.
        crashed_step.crashes += 1
        if crashed_step.status is S.PENDING:  # its start was not stored: count the lost attempt
            crashed_step.attempts += 1
        changed.append(crashed_step.name)
        if crashed_step.crashes >= plan.max_crashes:
            out.append(Save(tuple(changed)))
            if crashed_step.status is S.PENDING:
                crashed_step.status = check_step(crashed_step.status, S.RUNNING)
            exc = StepCrashedError(
                f"step '{crashed_step.name}' of run '{run.id}' ({run.name}): its process died "
                f"{crashed_step.crashes} times while running it (max_crashes={plan.max_crashes})"
            )
            saga.fail_step(run, plan, crashed_step, exc, 0.0, None, now, memo, out)
            return
    out.append(Save(tuple(changed)))
    _next_step(run, plan, now, memo, out)


def _retry_from(run: RunRecord, plan: Plan, ev: RetryFrom, now: float, memo: Memo, out: list[Effect]) -> None:
    sp = plan.of(ev.step)
    index = plan.by_name[sp.group].index if sp.group is not None else sp.index  # a member: its group
    restart = _restart_point(run, index, _UNDONE | {S.COMPENSATING})
    run.data_json = run.steps[restart].data_before or run.data_json
    changed = _reset_from(run, plan, restart, frozenset(), memo)
    run.status = check_run(run.status, R.PENDING if ev.enqueue else R.RUNNING)
    run.error = run.error_type = run.error_step = None
    run.completed_at = None
    run.waiting_for = None
    run.cancel_reason = None
    timers.clear(run)
    if changed:
        out.append(Outputs(drop=tuple(changed)))
    if not ev.enqueue:
        meta = {**plan.meta(), "fromStep": run.steps[restart].name, "reason": "retry_step"}
        emit(out, run, plan, now, E.WORKFLOW_RESUME, {"status": "running", "meta": meta})
    out.append(Save(tuple(changed)))
    if ev.enqueue:
        out.append(Done())
    else:
        _next_step(run, plan, now, memo, out)


#: What `flux.core.timers` continues with (a woken step, a sleep already past).
next_step = _next_step
attempt_ended = _attempt_ended
