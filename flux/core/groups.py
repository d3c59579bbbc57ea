"""Parallel groups and maps (SPEC §11): members that run at once, their merge, their failure.

A group's record comes first in the run and its branches follow it; a map's items are
records appended after the definition's steps, once its `items(ctx)` has been stored. Each
member is a durable step of its own: started, retried, timed out, saved and traced alone;
the machine hands the driver concurrent `Invoke`s and `Wait`s and takes their outcomes in
whatever order they come. When every member is done the group merges the members' changes
to the data (two members that changed one key fail it) and goes on. A member that fails for
good interrupts those still running; once none is, the run fails with the saga.
"""

from __future__ import annotations

from typing import Any

from .. import serialization as ser
from ..errors import CommitInterruptedError, StepCrashedError, WorkflowDefinitionError
from ..events import EventType as E
from ..records import RunRecord, StepRecord
from ..status import STEP_DONE, StepStatus, check_step
from . import saga
from .messages import (
    AttemptEnded,
    Effect,
    Hook,
    Interrupt,
    Invoke,
    ItemsEnded,
    Log,
    Outputs,
    Proceed,
    Save,
    Wait,
    WhenEnded,
)
from .plan import Plan, StepPlan
from .saga import GroupState, Memo
from .trace import emit, error_fields, error_text

S = StepStatus


def state(run: RunRecord, plan: Plan, memo: Memo, gsp: StepPlan) -> GroupState:
    """What this execution knows of a group's members (built once from the records)."""
    st = memo.groups.get(gsp.name)
    if st is not None:
        return st
    if gsp.kind == "parallel":
        indexes = list(gsp.members)
        names = [plan.steps[i].name for i in indexes]
    else:
        names, indexes = [], []
        base = saga.item_base(run, plan, memo, gsp.name)
        if base is not None:
            k = 0
            while base + k < len(run.steps) and run.steps[base + k].name == f"{gsp.name}[{k}]":
                names.append(run.steps[base + k].name)
                indexes.append(base + k)
                memo.where[names[-1]] = base + k
                k += 1
    left = sum(1 for i in indexes if run.steps[i].status not in STEP_DONE)
    st = memo.groups[gsp.name] = GroupState(names, indexes, left)
    return st


def member_plan(plan: Plan, gsp: StepPlan, st: GroupState, k: int) -> StepPlan:
    return plan.steps[st.indexes[k]] if gsp.kind == "parallel" else plan.item(gsp, k)


def crashed(run: RunRecord, plan: Plan, gsp: StepPlan, memo: Memo) -> list[str]:
    """Count a crash for each member whose attempt was in flight when its process died."""
    st = state(run, plan, memo, gsp)
    names = []
    for name, i in zip(st.names, st.indexes, strict=True):
        rec = run.steps[i]
        if rec.status is S.RUNNING and rec.kind != "commit":
            rec.crashes += 1
            names.append(name)
    return names


def resume(run: RunRecord, plan: Plan, gsp: StepPlan, memo: Memo) -> list[str]:
    """A resume goes on from this group (it failed, or was cancelled or compensated): the
    members that are done stay done, the others are put back to pending; a map keeps its
    items. The names of the records changed."""
    rec = run.steps[gsp.index]
    run.steps[gsp.index] = StepRecord(
        rec.name, rec.kind, S.RUNNING, attempts=rec.attempts, started_at=rec.started_at,
        data_before=rec.data_before, items_json=rec.items_json,
    )  # fmt: skip
    memo.groups.pop(gsp.name, None)
    st = state(run, plan, memo, gsp)
    changed = [gsp.name]
    for name, i in zip(st.names, st.indexes, strict=True):
        member = run.steps[i]
        if member.status not in STEP_DONE:
            run.steps[i] = StepRecord(member.name, member.kind)
            changed.append(name)
    memo.groups.pop(gsp.name, None)  # counted again from the records as they are now
    return changed


def start(run: RunRecord, plan: Plan, gsp: StepPlan, now: float, memo: Memo, out: list[Effect]) -> None:
    """The run reached the group (or came back to it): begin it, or go on with it."""
    rec = run.steps[gsp.index]
    if gsp.kind == "map" and rec.items_json is None:
        out.append(Invoke(gsp.name, "items", 1, None, gsp.index))
        return
    if rec.status is S.PENDING:
        _begin(run, plan, gsp, rec, now, out)
        out.append(gsp.save)
    st = state(run, plan, memo, gsp)
    if st.left == 0 and not st.inflight:
        _complete(run, plan, gsp, st, now, memo, out)
        return
    fill(run, plan, gsp, now, memo, out)


def _begin(run: RunRecord, plan: Plan, gsp: StepPlan, rec: StepRecord, now: float, out: list[Effect]) -> None:
    rec.status = check_step(rec.status, S.RUNNING)
    rec.started_at = now
    rec.attempts += 1
    rec.data_before = run.data_json  # what every member sees, and what retry_step restores
    emit(out, run, plan, now, E.STEP_START, {"stepName": gsp.name, "stepIndex": gsp.index, "commit": False,
         "attempt": rec.attempts, "maxRetries": 0})  # fmt: skip


def items_ended(
    run: RunRecord, plan: Plan, ev: ItemsEnded, now: float, memo: Memo, out: list[Effect]
) -> None:
    gsp = plan.by_name[ev.step]
    rec = run.steps[gsp.index]
    error = ev.error
    if error is None and ev.count > plan.max_map_items:
        error = WorkflowDefinitionError(
            f"workflow '{run.name}', map '{gsp.name}' (run '{run.id}'): items() returned {ev.count} "
            f"items, more than max_map_items={plan.max_map_items}"
        )
    if error is not None:
        rec.status = check_step(rec.status, S.RUNNING)
        saga.fail_step(run, plan, rec, error, 0.0, None, now, memo, out)
        return
    _begin(run, plan, gsp, rec, now, out)
    rec.items_json = ev.items_json
    base = len(run.steps)
    names = [f"{gsp.name}[{k}]" for k in range(ev.count)]
    run.steps.extend(StepRecord(name, "step") for name in names)
    for k, name in enumerate(names):
        memo.where[name] = base + k
    memo.groups[gsp.name] = GroupState(names, list(range(base, base + ev.count)), ev.count)
    # The items and their records in one write: after a crash the same items run.
    out.append(Save((gsp.name, *names), (gsp.index, *range(base, base + ev.count))))
    start(run, plan, gsp, now, memo, out)


def fill(run: RunRecord, plan: Plan, gsp: StepPlan, now: float, memo: Memo, out: list[Effect]) -> None:
    """Start the members that are neither done nor running, as many as may run at once."""
    st = state(run, plan, memo, gsp)
    if st.failure is not None or run.cancel_reason is not None:
        return
    limit = gsp.max_concurrency if gsp.kind == "map" else len(st.names)
    k = st.cursor
    while k < len(st.names) and len(st.inflight) < limit:
        name = st.names[k]
        rec = run.steps[st.indexes[k]]
        if rec.status in STEP_DONE or name in st.inflight:
            k += 1
            if k - 1 == st.cursor:
                st.cursor = k
            continue
        sp = member_plan(plan, gsp, st, k)
        if rec.status is S.RUNNING:  # its attempt was cut short by the death of a process
            if sp.commit:
                exc: Exception = CommitInterruptedError(
                    f"commit '{name}' of group '{gsp.name}' in run '{run.id}' ({run.name}) started but "
                    "its end was not recorded: it may have happened. Use retry_step to run the group "
                    "again (the commit keeps its idempotency key)."
                )
                _failed(run, plan, gsp, st, sp, rec, exc, 0.0, None, now, memo, out)
                return
            if rec.crashes >= plan.max_crashes:
                exc = StepCrashedError(
                    f"step '{name}' of run '{run.id}' ({run.name}): its process died {rec.crashes} "
                    f"times while running it (max_crashes={plan.max_crashes})"
                )
                _failed(run, plan, gsp, st, sp, rec, exc, 0.0, None, now, memo, out)
                return
        elif sp.has_when and rec.status is S.PENDING:
            out.append(Invoke(name, "when", rec.attempts + 1, None, sp.index))
            return  # goes on at its WhenEnded
        if sp.commit and any(type(e) is Save for e in out):
            out.append(Proceed(name))
            return  # goes on at its Proceeded: the commit's start is a write of its own
        attempt(run, plan, gsp, st, sp, rec, now, out)
        k += 1


def attempt(
    run: RunRecord, plan: Plan, gsp: StepPlan, st: GroupState, sp: StepPlan, rec: StepRecord, now: float,
    out: list[Effect],
) -> None:  # fmt: skip
    if rec.started_at is None:
        rec.started_at = now
    rec.attempts += 1
    rec.status = check_step(rec.status, S.RUNNING)
    # The start is stored before the call: at-most-once for a commit (a write of its own); for
    # a step, in the write of whatever came before (the driver merges them), so that a crash
    # in the middle is counted against `max_crashes`.
    out.append(sp.save if sp.item is None else Save((sp.name,), (st.indexes[sp.item],)))
    fields = {"stepName": sp.name, "stepIndex": sp.index, "commit": sp.commit, "attempt": rec.attempts,
              "maxRetries": sp.retries}  # fmt: skip
    _tag(fields, sp)
    emit(out, run, plan, now, E.STEP_START, fields)
    st.inflight.add(sp.name)
    out.append(Invoke(sp.name, "handler", rec.attempts, sp.timeout, sp.index, concurrent=True,
                      data_json=run.steps[gsp.index].data_before, item=sp.item, group=gsp.name))  # fmt: skip


def _tag(fields: dict[str, Any], sp: StepPlan) -> dict[str, Any]:
    if sp.tags:
        fields.update(sp.tags)
    return fields


def _owner(plan: Plan, sp: StepPlan, run: RunRecord, memo: Memo) -> tuple[StepPlan, GroupState]:
    assert sp.group is not None
    gsp = plan.by_name[sp.group]
    return gsp, state(run, plan, memo, gsp)


def when_ended(
    run: RunRecord, plan: Plan, sp: StepPlan, ev: WhenEnded, now: float, memo: Memo, out: list[Effect]
) -> None:
    gsp, st = _owner(plan, sp, run, memo)
    rec = saga.record_of(run, plan, memo, sp.name)
    if ev.error is not None:
        rec.status = check_step(rec.status, S.RUNNING)
        _failed(run, plan, gsp, st, sp, rec, ev.error, 0.0, None, now, memo, out)
        return
    if not ev.go:
        rec.status = check_step(rec.status, S.SKIPPED)
        rec.completed_at = now
        out.append(sp.save)
        emit(out, run, plan, now, E.STEP_SKIPPED, _tag({"stepName": sp.name, "stepIndex": sp.index,
             "status": "skipped"}, sp))  # fmt: skip
        st.left -= 1
        _next(run, plan, gsp, st, now, memo, out)
        return
    if sp.commit and any(type(e) is Save for e in out):
        out.append(Proceed(sp.name))
        return
    attempt(run, plan, gsp, st, sp, rec, now, out)
    fill(run, plan, gsp, now, memo, out)


def proceeded(run: RunRecord, plan: Plan, sp: StepPlan, now: float, memo: Memo, out: list[Effect]) -> None:
    gsp, st = _owner(plan, sp, run, memo)
    attempt(run, plan, gsp, st, sp, saga.record_of(run, plan, memo, sp.name), now, out)
    fill(run, plan, gsp, now, memo, out)


def backoff_ended(
    run: RunRecord, plan: Plan, sp: StepPlan, now: float, memo: Memo, out: list[Effect]
) -> None:
    gsp, st = _owner(plan, sp, run, memo)
    st.inflight.discard(sp.name)
    rec = saga.record_of(run, plan, memo, sp.name)
    if st.failure is not None or run.cancel_reason is not None:
        _cancelled(run, plan, sp, rec, now, memo, out)
        _settle(run, plan, gsp, st, now, memo, out)
        return
    attempt(run, plan, gsp, st, sp, rec, now, out)


def member_ended(
    run: RunRecord, plan: Plan, sp: StepPlan, ev: AttemptEnded, now: float, memo: Memo, out: list[Effect]
) -> None:
    from .machine import may_retry

    gsp, st = _owner(plan, sp, run, memo)
    st.inflight.discard(sp.name)
    rec = saga.record_of(run, plan, memo, sp.name)
    if ev.error is None and (ev.timer is not None or ev.signal is not None):
        what = "Flux.sleep" if ev.timer is not None and ev.timer.kind == "sleep" else "Flux.wait"
        ev.error = WorkflowDefinitionError(
            f"workflow '{run.name}', step '{sp.name}' of {gsp.kind} '{gsp.name}' (run '{run.id}'): "
            f"{what} cannot be used in a branch or a map item; wait in a step before or after the group"
        )
    if ev.error is not None:
        exc = ev.error
        if st.failure is not None or run.cancel_reason is not None:
            _cancelled(run, plan, sp, rec, now, memo, out)
            _settle(run, plan, gsp, st, now, memo, out)
            return
        tries = rec.attempts - rec.crashes
        if may_retry(exc, sp, tries):
            fields = _tag(error_fields(sp, rec, exc, ev.duration, ev.stack), sp)
            fields["retries"] = tries
            fields["maxRetries"] = sp.retries
            emit(out, run, plan, now, E.STEP_RETRY, fields)
            out.append(Log("warn", f"attempt {rec.attempts} failed: {error_text(exc)}; retrying", sp.name))
            st.inflight.add(sp.name)
            out.append(Wait(sp.name, tries, concurrent=True))
            return
        _failed(run, plan, gsp, st, sp, rec, exc, ev.duration, ev.stack, now, memo, out)
        return
    assert ev.output_json is not None
    rec.status = check_step(rec.status, S.COMPLETED)
    rec.output_json = ev.output_json
    rec.delta_json = ev.delta_json
    rec.completed_at = ev.at if ev.at is not None else now
    rec.error = rec.error_type = None
    out.append(sp.save if sp.item is None else Save((sp.name,), (memo.where[sp.name],)))
    fields = _tag({"stepName": sp.name, "stepIndex": sp.index, "commit": sp.commit, "attempt": rec.attempts,
                   "duration": ev.duration * 1000, "status": "completed"}, sp)  # fmt: skip
    emit(out, run, plan, now, E.STEP_COMPLETE, fields, {"output": ev.output_json})
    if "step_complete" in plan.hooks:
        out.append(Hook("step_complete", sp.name, rec.attempts, output_json=ev.output_json))
    st.left -= 1
    if st.failure is not None or run.cancel_reason is not None:
        _settle(run, plan, gsp, st, now, memo, out)
    else:
        _next(run, plan, gsp, st, now, memo, out)


def _next(
    run: RunRecord, plan: Plan, gsp: StepPlan, st: GroupState, now: float, memo: Memo, out: list[Effect]
) -> None:
    if st.left == 0 and not st.inflight:
        _complete(run, plan, gsp, st, now, memo, out)
    else:
        fill(run, plan, gsp, now, memo, out)


def _cancelled(
    run: RunRecord, plan: Plan, sp: StepPlan, rec: StepRecord, now: float, memo: Memo, out: list[Effect]
) -> None:
    """A member stopped because a sibling failed for good or the run is cancelled."""
    rec.status = check_step(rec.status, S.CANCELLED)
    rec.completed_at = now
    out.append(sp.save if sp.item is None else Save((sp.name,), (memo.where[sp.name],)))
    emit(out, run, plan, now, E.STEP_ERROR, _tag({"stepName": sp.name, "stepIndex": sp.index,
         "commit": sp.commit, "attempt": rec.attempts, "status": "cancelled",
         "error": "cancelled: " + (run.cancel_reason or "another member of the group failed"),
         "errorType": "RunCancelledError"}, sp))  # fmt: skip


def _failed(
    run: RunRecord, plan: Plan, gsp: StepPlan, st: GroupState, sp: StepPlan, rec: StepRecord,
    exc: BaseException, duration: float, stack: list[dict[str, Any]] | None, now: float, memo: Memo,
    out: list[Effect],
) -> None:  # fmt: skip
    """A member failed for good: record it, interrupt the members still running, and fail
    the group once none is."""
    rec.status = check_step(rec.status, S.FAILED)
    rec.completed_at = now
    rec.error = error_text(exc)
    rec.error_type = type(exc).__name__
    out.append(sp.save if sp.item is None else Save((sp.name,), (memo.where[sp.name],)))
    emit(out, run, plan, now, E.STEP_ERROR, _tag(error_fields(sp, rec, exc, duration, stack), sp))
    if "step_error" in plan.hooks:
        out.append(Hook("step_error", sp.name, rec.attempts, error=exc))
    st.failure = (sp.name, exc, stack)
    if st.inflight:
        out.append(Interrupt(tuple(sorted(st.inflight)), f"'{sp.name}' failed for good"))
    _settle(run, plan, gsp, st, now, memo, out)


def _settle(
    run: RunRecord, plan: Plan, gsp: StepPlan, st: GroupState, now: float, memo: Memo, out: list[Effect]
) -> None:
    """After a failure or a cancel: once no member is running, fail or cancel the run."""
    if st.inflight:
        if run.cancel_reason is not None and st.failure is None:
            out.append(Interrupt(tuple(sorted(st.inflight)), "the run is cancelled"))
        return
    del memo.groups[gsp.name]
    grec = run.steps[gsp.index]
    if st.failure is None:  # cancelled
        saga.cancel(run, plan, now, memo, out)
        return
    _name, exc, stack = st.failure
    saga.fail_step(run, plan, grec, exc, now - (grec.started_at or now), stack, now, memo, out)


def _complete(
    run: RunRecord, plan: Plan, gsp: StepPlan, st: GroupState, now: float, memo: Memo, out: list[Effect]
) -> None:
    from .machine import next_step

    memo.groups.pop(gsp.name, None)
    grec = run.steps[gsp.index]
    merged: dict[str, Any] | None = None
    owner: dict[str, str] = {}
    for name, i in zip(st.names, st.indexes, strict=True):
        rec = run.steps[i]
        if rec.status is not S.COMPLETED or rec.delta_json is None:
            continue
        if merged is None:
            merged = ser.loads(grec.data_before or run.data_json)
        delta = ser.loads(rec.delta_json)
        for key in (*delta.get("set", {}), *delta.get("del", ())):
            first = owner.setdefault(key, name)
            if first != name:
                exc = WorkflowDefinitionError(
                    f"workflow '{run.name}', {gsp.kind} '{gsp.name}' (run '{run.id}'): '{first}' and "
                    f"'{name}' both changed ctx.data[{key!r}]; let one of them own the key"
                )
                saga.fail_step(run, plan, grec, exc, now - (grec.started_at or now), None, now, memo, out)
                return
        merged.update(delta.get("set", {}))
        for key in delta.get("del", ()):
            merged.pop(key, None)
    done = [(name, run.steps[i]) for name, i in zip(st.names, st.indexes, strict=True)]
    if gsp.kind == "parallel":
        output: Any = {
            n: ser.loads(r.output_json) for n, r in done if r.status is S.COMPLETED and r.output_json
        }
    else:
        output = [ser.loads(r.output_json) if r.output_json is not None else None for _, r in done]
    output_json = ser.dumps(output, path=f"outputs.{gsp.name}", step=gsp.name)
    if merged is not None:
        run.data_json = ser.dumps(merged, path="data", step=gsp.name)
    grec.status = check_step(grec.status, S.COMPLETED)
    grec.output_json = output_json
    grec.completed_at = now
    shown = {gsp.name: output_json}
    if gsp.kind == "parallel":
        shown.update({n: r.output_json for n, r in done if r.status is S.COMPLETED and r.output_json})
    out.append(Outputs(shown))
    out.append(gsp.save)
    took = (now - (grec.started_at or now)) * 1000
    emit(out, run, plan, now, E.STEP_COMPLETE, {"stepName": gsp.name, "stepIndex": gsp.index, "commit": False,
         "attempt": grec.attempts, "duration": took, "status": "completed"},
         {"output": output_json, "data": run.data_json})  # fmt: skip
    if "step_complete" in plan.hooks:
        out.append(Hook("step_complete", gsp.name, grec.attempts))
    next_step(run, plan, now, memo, out, gsp.index + 1)
