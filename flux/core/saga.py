"""The way back: a step that fails for good, the compensations that follow, cancellation,
and a run whose save failed put to rest (SPEC §5 saga and poison runs, §9)."""

from __future__ import annotations

from typing import Any

from ..errors import (
    CommitInterruptedError,
    DeadlineExceededError,
    FluxError,
    RunCancelledError,
    StepError,
    StorageError,
)
from ..events import EventType as E
from ..records import RunRecord, StepRecord
from ..status import RunStatus, StepStatus, check_run, check_step
from .messages import CompensationEnded, Done, Effect, Hook, Invoke, Log, Outputs, Save, Wait
from .plan import Plan
from .trace import emit, error_fields, error_text

R = RunStatus
S = StepStatus

#: The error type of a run cancelled at its deadline (SPEC §10).
_DEADLINE = DeadlineExceededError.__name__
#: The error types of a run that ends `cancelled` (not `rolled_back`) once compensated.
_CANCELS = frozenset({RunCancelledError.__name__, _DEADLINE})

#: Step states whose compensation is (still) to be done when the run rolls back.
_TO_UNDO = frozenset({S.COMPLETED, S.COMPENSATING})


class GroupState:
    """What one execution knows of a parallel group's or a map's members (rebuilt from the
    records after a resume): their names and positions in the run, how many are not done,
    which have an attempt or a backoff out, the first that may still need a start, and the
    member that failed for good (name, error, frames)."""

    __slots__ = ("cursor", "failure", "indexes", "inflight", "left", "names")

    def __init__(self, names: list[str], indexes: list[int], left: int) -> None:
        self.names = names
        self.indexes = indexes
        self.left = left
        self.inflight: set[str] = set()
        self.cursor = 0
        self.failure: tuple[str, BaseException, list[dict[str, Any]] | None] | None = None


class Memo:
    """What the machine remembers between the events of one execution and never stores:
    the exception a failed run ended with, for the `workflow_error` hook, and the state of
    the groups and maps under way."""

    __slots__ = ("failure", "groups", "stack", "where")

    def __init__(self) -> None:
        self.failure: BaseException | None = None
        #: The failed attempt's frames, for the run's `workflow:error` event.
        self.stack: list[dict[str, Any]] | None = None
        self.groups: dict[str, GroupState] = {}
        #: The positions of map items' records in the run, by name.
        self.where: dict[str, int] = {}


def item_base(run: RunRecord, plan: Plan, memo: Memo, map_name: str) -> int | None:
    """Where the records of a map's items begin in the run (None: not made yet)."""
    first = f"{map_name}[0]"
    at = memo.where.get(first)
    if at is not None:
        return at
    for i in range(len(plan.steps), len(run.steps)):
        if run.steps[i].name == first:
            memo.where[first] = i
            return i
    return None


def record_of(run: RunRecord, plan: Plan, memo: Memo, name: str) -> StepRecord:
    """The record of a step, a branch or a map item, by name."""
    sp = plan.by_name.get(name)
    if sp is not None:
        return run.steps[sp.index]
    at = memo.where.get(name)
    if at is None:
        for i in range(len(plan.steps), len(run.steps)):
            memo.where[run.steps[i].name] = i
        at = memo.where[name]
    return run.steps[at]


def save_of(plan: Plan, memo: Memo, name: str) -> Save:
    sp = plan.by_name.get(name)
    return sp.save if sp is not None else Save((name,), (memo.where[name],))


def duration_ms(run: RunRecord, now: float) -> float:
    return ((run.completed_at or now) - run.created_at) * 1000


def stored_failure(run: RunRecord) -> BaseException:
    """The failure a run stored, for the hook of a rollback resumed in another process."""
    if run.cancel_reason is not None:
        if run.error_type == _DEADLINE:
            return DeadlineExceededError(run.cancel_reason)
        return RunCancelledError(run.cancel_reason)
    return FluxError(run.error or "step failed")


def fail_step(
    run: RunRecord,
    plan: Plan,
    rec: StepRecord,
    exc: BaseException,
    duration: float,
    stack: list[dict[str, Any]] | None,
    now: float,
    memo: Memo,
    out: list[Effect],
) -> None:
    """The step failed for good: record it, then fail the run (with its saga)."""
    sp = plan.by_name[rec.name]
    rec.status = check_step(rec.status, S.FAILED)
    rec.completed_at = now
    rec.error = error_text(exc)
    rec.error_type = type(exc).__name__
    if plan.traced:
        emit(out, run, plan, now, E.STEP_ERROR, error_fields(sp, rec, exc, duration, stack))
    if "step_error" in plan.hooks:
        out.append(Hook("step_error", rec.name, rec.attempts, error=exc))
    run.error = rec.error
    run.error_type = rec.error_type
    run.error_step = rec.name
    memo.failure = exc
    memo.stack = stack
    # the traceback of an unexpected error; a business error or a timeout says it all
    out.append(
        Log(
            "error",
            f"step failed for good: {run.error}",
            rec.name,
            None if isinstance(exc, StepError) else exc,
        )
    )
    # A commit that may have happened (here, or in a child run) is not undone by guesswork:
    # the run fails as it stands, for someone to look (SPEC §5).
    if isinstance(exc, CommitInterruptedError) or getattr(exc, "uncertain", False) or not _todo(run, plan):
        run.status = check_run(run.status, R.FAILED)
        run.completed_at = now
        out.append(Save((rec.name,)))
        _finish_error(run, plan, now, memo, out)
        return
    run.status = check_run(run.status, R.ROLLING_BACK)
    out.append(Save((rec.name,)))
    emit(out, run, plan, now, E.WORKFLOW_ROLLBACK_START, {"status": "rolling_back", "stepName": rec.name})
    next_compensation(run, plan, now, memo, out)


def _todo(run: RunRecord, plan: Plan) -> list[str]:
    """The steps, branches and items to compensate, the latest completed first (one cut
    short by a crash is done again)."""
    if len(run.steps) == len(plan.steps) and not any(sp.kind in _GROUPS for sp in plan.steps):
        return [
            sp.name
            for sp in reversed(plan.steps)
            if sp.has_compensate and run.steps[sp.index].status in _TO_UNDO
        ]
    todo = [
        (rec.completed_at or 0.0, i, rec.name)
        for i, rec in enumerate(run.steps)
        if rec.status in _TO_UNDO and rec.kind not in _GROUPS and plan.of(rec.name).has_compensate
    ]
    todo.sort(reverse=True)
    return [name for _, _, name in todo]


_GROUPS = frozenset({"parallel", "map"})


def next_compensation(run: RunRecord, plan: Plan, now: float, memo: Memo, out: list[Effect]) -> None:
    todo = _todo(run, plan)
    if not todo:
        _end_rollback(run, plan, now, memo, out)
        return
    rec = record_of(run, plan, memo, todo[0])
    if rec.status is S.COMPLETED:
        rec.status = check_step(rec.status, S.COMPENSATING)
        out.append(save_of(plan, memo, rec.name))
    compensate_again(run, plan, rec.name, now, memo, out)


def compensate_again(
    run: RunRecord, plan: Plan, step: str, now: float, memo: Memo, out: list[Effect]
) -> None:
    sp = plan.of(step)
    rec = record_of(run, plan, memo, step)
    rec.compensation_attempts += 1
    if sp.group is not None and rec.output_json is not None:
        out.append(Outputs({step: rec.output_json}))  # a member's undo sees its own output
    out.append(Invoke(step, "compensate", rec.compensation_attempts, sp.timeout, sp.index, item=sp.item,
                      group=sp.group))  # fmt: skip


def compensation_ended(
    run: RunRecord, plan: Plan, ev: CompensationEnded, now: float, memo: Memo, out: list[Effect]
) -> None:
    from .machine import may_retry

    sp = plan.of(ev.step)
    rec = record_of(run, plan, memo, ev.step)
    if ev.error is not None:
        exc = ev.error
        fields = error_fields(sp, rec, exc, ev.duration, ev.stack)
        if sp.tags:
            fields.update(sp.tags)
        fields["attempt"] = rec.compensation_attempts
        if may_retry(exc, sp, rec.compensation_attempts):
            emit(out, run, plan, now, E.STEP_COMPENSATE_ERROR, fields)
            out.append(Wait(sp.name, rec.compensation_attempts, compensation=True))
            return
        rec.status = check_step(rec.status, S.COMPENSATION_FAILED)
        rec.error = f"compensation failed: {error_text(exc)}"
        out.append(save_of(plan, memo, sp.name))
        fields["status"] = "compensation_failed"
        emit(out, run, plan, now, E.STEP_COMPENSATE_ERROR, fields)
        out.append(
            Log("error", f"compensation failed for good: {error_text(exc)}", sp.name,
                None if isinstance(exc, StepError) else exc)
        )  # fmt: skip
        next_compensation(run, plan, now, memo, out)
        return
    assert ev.data_json is not None
    run.data_json = ev.data_json
    rec.status = check_step(rec.status, S.COMPENSATED)
    rec.compensated_at = now
    out.append(Outputs(drop=(sp.name,)))
    out.append(save_of(plan, memo, sp.name))
    fields = {"stepName": sp.name, "stepIndex": sp.index, "attempt": rec.compensation_attempts,
              "duration": ev.duration * 1000, "status": "compensated"}  # fmt: skip
    if sp.tags:
        fields.update(sp.tags)
    emit(out, run, plan, now, E.STEP_COMPENSATE, fields)
    next_compensation(run, plan, now, memo, out)


def _end_rollback(run: RunRecord, plan: Plan, now: float, memo: Memo, out: list[Effect]) -> None:
    failed = any(r.status is S.COMPENSATION_FAILED for r in run.steps)
    if failed:
        status = R.ROLLBACK_FAILED
    elif run.error_type in _CANCELS:  # this rollback is the cancel's own
        status = R.CANCELLED
    else:
        status = R.ROLLED_BACK
    run.status = check_run(run.status, status)
    run.completed_at = now
    out.append(Save())
    emit(out, run, plan, now, E.WORKFLOW_ROLLBACK_COMPLETE, {"status": status.value})
    _finish_error(run, plan, now, memo, out)


def _finish_error(run: RunRecord, plan: Plan, now: float, memo: Memo, out: list[Effect]) -> None:
    if plan.traced:
        fields: dict[str, Any] = {"status": run.status.value, "error": run.error, "errorType": run.error_type,
                  "stepName": run.error_step, "duration": duration_ms(run, now)}  # fmt: skip
        if memo.stack:
            fields["stack"] = memo.stack
        emit(out, run, plan, now, E.WORKFLOW_ERROR, fields, {"data": run.data_json})
    if "workflow_error" in plan.hooks:
        out.append(Hook("workflow_error", error=memo.failure or stored_failure(run)))
    out.append(Done())


def cancel(run: RunRecord, plan: Plan, now: float, memo: Memo, out: list[Effect]) -> None:
    """Cancel a run this process holds, with no attempt in flight: no further step starts,
    the completed steps are compensated, and the run ends `cancelled` (SPEC §9)."""
    reason = run.cancel_reason or "cancelled"
    kind: type[StepError] = (
        DeadlineExceededError if run.deadline is not None and now >= run.deadline else RunCancelledError
    )
    fields = {"status": "cancelled", "reason": reason}
    if kind is DeadlineExceededError:
        fields["errorType"] = _DEADLINE
    emit(out, run, plan, now, E.WORKFLOW_CANCEL, fields)
    run.wake_at = run.timer = None
    touched = []
    current = None
    for rec in run.steps:
        if rec.status in (S.RUNNING, S.SUSPENDED):
            rec.status = check_step(rec.status, S.CANCELLED)
            rec.completed_at = now
            rec.waiting_for = None
            touched.append(rec.name)
        if rec.status is S.CANCELLED:
            current = rec.name
    run.error = reason
    run.error_type = kind.__name__
    run.error_step = current
    run.waiting_for = None
    memo.failure = (
        kind(reason)
        if kind is DeadlineExceededError
        else kind(f"run '{run.id}' ({run.name}) was cancelled: {reason}")
    )
    out.append(Log("info", f"cancelled: {reason}", current))
    if _todo(run, plan):
        run.status = check_run(run.status, R.ROLLING_BACK)
        out.append(Save(tuple(touched)))
        emit(out, run, plan, now, E.WORKFLOW_ROLLBACK_START, {"status": "rolling_back", "stepName": current})
        next_compensation(run, plan, now, memo, out)
        return
    run.status = check_run(run.status, R.CANCELLED)
    run.completed_at = now
    out.append(Save(tuple(touched)))
    _finish_error(run, plan, now, memo, out)


def save_failed(
    run: RunRecord, plan: Plan, error: BaseException, now: float, memo: Memo, out: list[Effect]
) -> None:
    """A save raised: `run` is the run as it is stored. Put it to rest with a named error
    (failed, its unfinished step failed) so that no worker claims it again and again."""
    message = f"the run's state could not be stored: {error_text(error)}"
    exc = StorageError(message)
    rec = next((r for r in run.steps if r.status not in (S.COMPLETED, S.SKIPPED, S.FAILED)), None)
    touched: tuple[str, ...] = ()
    if rec is not None and rec.status in (S.PENDING, S.RUNNING):
        if rec.status is S.PENDING:
            rec.status = check_step(rec.status, S.RUNNING)
        rec.status = check_step(rec.status, S.FAILED)
        rec.completed_at = now
        rec.error = message
        rec.error_type = "StorageError"
        touched = (rec.name,)
    run.error = message
    run.error_type = "StorageError"
    run.error_step = rec.name if rec is not None else None
    memo.failure = exc
    target = R.ROLLBACK_FAILED if run.status is R.ROLLING_BACK else R.FAILED
    if run.status is R.PENDING:
        run.status = check_run(run.status, R.RUNNING)
    run.status = check_run(run.status, target)
    run.completed_at = now
    out.append(Log("error", message, run.error_step, error))
    out.append(Save(touched))
    _finish_error(run, plan, now, memo, out)
