"""flux.core: the run machine as tables of (state, event) -> (state, effects).

No storage, no clock, no thread, no event loop: `decide` is called directly with a run
record, a plan, an event and a time, and what it returns is compared with what it must do.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from flux import Backoff, FatalError, RunStatus, StepStatus, create_workflow
from flux.core import Memo, Plan, decide, plan_of
from flux.core.messages import (
    AttemptEnded,
    BackoffEnded,
    CancelNow,
    CompensationEnded,
    Done,
    Effect,
    Emit,
    Hook,
    Invoke,
    Proceed,
    Proceeded,
    Resumed,
    Save,
    Signalled,
    Started,
    Wait,
)
from flux.records import RunRecord, StepRecord

R, S = RunStatus, StepStatus
NOW = 1_000.0


def noop(ctx: Any) -> None:
    return None


def plan(flow: Any, *, traced: bool = False, retries: int = 3, hooks: frozenset[str] = frozenset()) -> Plan:
    return plan_of(flow, default_retries=retries, default_timeout=None, default_backoff=Backoff(),
                   traced=traced, hooks=hooks, max_crashes=3)  # fmt: skip


def new_run(flow: Any, status: RunStatus = R.RUNNING) -> RunRecord:
    return RunRecord(id="r", name=flow.name, status=status, input_json="{}",
                     steps=[StepRecord(s.name, s.kind) for s in flow.steps], created_at=NOW)  # fmt: skip


def kinds(effects: list[Effect]) -> list[str]:
    out = []
    for e in effects:
        if isinstance(e, Emit):
            out.append(e.kind)
        elif isinstance(e, Save):
            out.append(f"save{list(e.steps)}")
        elif isinstance(e, Invoke):
            out.append(f"{e.what}:{e.step}#{e.attempt}")
        elif isinstance(e, Wait):
            out.append(f"wait:{e.step}#{e.retry}")
        elif isinstance(e, Hook):
            out.append(f"hook:{e.name}")
        elif isinstance(e, Proceed):
            out.append(f"proceed:{e.step}")
        else:
            out.append(type(e).__name__.lower())
    return out


TWO = create_workflow("two").step("a", noop).step("b", noop)


def ok(step: str) -> AttemptEnded:
    return AttemptEnded(step, 0.001, output_json="1", data_json='{"x": 1}')


def test_a_run_starts_with_its_first_step() -> None:
    run, p = new_run(TWO), plan(TWO, traced=True)
    effects = decide(run, p, Started(), NOW, Memo())
    assert kinds(effects) == ["workflow:start", "step:start", "handler:a#1"]
    assert [e.seq for e in effects if isinstance(e, Emit)] == [1, 2]  # numbered in order
    assert run.steps[0].status is S.RUNNING and run.steps[0].started_at == NOW


def test_a_finished_step_is_saved_before_the_next_starts_and_the_last_one_ends_the_run() -> None:
    run, p, memo = new_run(TWO), plan(TWO), Memo()
    decide(run, p, Started(), NOW, memo)
    effects = decide(run, p, ok("a"), NOW + 1, memo)
    assert kinds(effects) == ["save['a']", "handler:b#1"]
    effects = decide(run, p, ok("b"), NOW + 2, memo)
    # the last step and the run's end are one write
    assert kinds(effects) == ["save['b']", "log", "done"]
    assert run.status is R.COMPLETED and run.completed_at == NOW + 2 and run.data_json == '{"x": 1}'


def test_untraced_runs_make_no_events_and_hooks_nobody_set_make_no_effect() -> None:
    run, p, memo = new_run(TWO), plan(TWO, hooks=frozenset({"step_complete"})), Memo()
    decide(run, p, Started(), NOW, memo)
    effects = decide(run, p, ok("a"), NOW, memo)
    assert kinds(effects) == ["save['a']", "hook:step_complete", "handler:b#1"]
    assert run.seq == 0


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("flaky"), ["log", "wait:a#1"]),  # retried after its backoff
        (FatalError("unpaid"), ["log", "save['a']", "done"]),  # never retried
    ],
)
def test_a_failed_attempt_is_retried_unless_fatal(error: BaseException, expected: list[str]) -> None:
    run, p, memo = new_run(TWO), plan(TWO), Memo()
    decide(run, p, Started(), NOW, memo)
    effects = decide(run, p, AttemptEnded("a", 0.1, error=error), NOW, memo)
    assert kinds(effects) == expected


def test_retries_are_counted_and_then_the_step_fails_for_good() -> None:
    run, p, memo = new_run(TWO), plan(TWO, retries=1), Memo()
    decide(run, p, Started(), NOW, memo)
    assert kinds(decide(run, p, AttemptEnded("a", 0, error=ValueError()), NOW, memo))[-1] == "wait:a#1"
    assert kinds(decide(run, p, BackoffEnded("a"), NOW, memo)) == ["handler:a#2"]
    effects = decide(run, p, AttemptEnded("a", 0, error=ValueError("again")), NOW, memo)
    assert kinds(effects) == ["log", "save['a']", "done"]
    assert run.status is R.FAILED and run.error == "again" and run.steps[0].attempts == 2


COMMIT = create_workflow("pay").step("a", noop).commit("charge", noop)


def test_a_commit_start_is_saved_on_its_own_before_its_handler_and_it_takes_no_default_retries() -> None:
    run, p, memo = new_run(COMMIT), plan(COMMIT, retries=3), Memo()
    decide(run, p, Started(), NOW, memo)
    effects = decide(run, p, ok("a"), NOW, memo)
    # never merged into the save of the step before (a hook may run between them)
    assert kinds(effects) == ["save['a']", "proceed:charge"]
    assert kinds(decide(run, p, Proceeded("charge"), NOW, memo)) == ["save['charge']", "handler:charge#1"]
    effects = decide(run, p, AttemptEnded("charge", 0, error=ConnectionError("after the effect")), NOW, memo)
    assert "wait:charge#1" not in kinds(effects)  # default_retries=3 does not apply to a commit
    assert run.status is R.FAILED


SAGA = create_workflow("trip").step("flight", noop, compensate=noop).step("hotel", noop)


def test_a_failure_compensates_the_completed_steps_latest_first() -> None:
    run, p, memo = new_run(SAGA), plan(SAGA, traced=True), Memo()
    decide(run, p, Started(), NOW, memo)
    decide(run, p, ok("flight"), NOW, memo)
    effects = decide(run, p, AttemptEnded("hotel", 0, error=FatalError("full")), NOW, memo)
    assert kinds(effects) == ["step:error", "log", "save['hotel']", "workflow:rollback_start",
                              "save['flight']", "compensate:flight#1"]  # fmt: skip
    assert run.status is R.ROLLING_BACK and run.steps[0].status is S.COMPENSATING
    effects = decide(run, p, CompensationEnded("flight", 0, data_json="{}"), NOW, memo)
    assert kinds(effects) == ["outputs", "save['flight']", "step:compensate", "save[]",
                              "workflow:rollback_complete", "workflow:error", "done"]  # fmt: skip
    assert run.status is R.ROLLED_BACK


def test_a_crashed_attempt_runs_again_as_the_next_attempt_until_max_crashes() -> None:
    run, p = new_run(TWO), plan(TWO)
    run.steps[0].attempts = 1
    for crash in (1, 2):
        effects = decide(run, p, Resumed("recover", crashed=True), NOW, Memo())
        assert kinds(effects)[-1] == f"handler:a#{crash + 2}"
        assert run.steps[0].crashes == crash
        # stored by the write that took the run over: its start and attempt number
        assert run.steps[0].status is S.RUNNING
    effects = decide(run, p, Resumed("recover", crashed=True), NOW, Memo())
    assert "handler:a#5" not in kinds(effects) and kinds(effects)[-1] == "done"
    assert run.status is R.FAILED and run.error_type == "StepCrashedError"


def test_a_commit_in_flight_at_a_crash_is_interrupted_not_called_again() -> None:
    run, p = new_run(COMMIT), plan(COMMIT)
    run.steps[0].status = S.COMPLETED
    run.steps[1].status = S.RUNNING
    effects = decide(run, p, Resumed("recover", crashed=True), NOW, Memo())
    assert not any(isinstance(e, Invoke) for e in effects)
    assert run.status is R.FAILED and run.error_type == "CommitInterruptedError"


def test_cancel_with_nothing_to_undo_ends_cancelled_at_once() -> None:
    run, p = new_run(TWO, R.PENDING), plan(TWO, traced=True)
    run.cancel_reason = "customer asked"
    effects = decide(run, p, CancelNow(), NOW, Memo())
    assert kinds(effects) == ["workflow:cancel", "log", "save[]", "workflow:error", "done"]
    assert run.status is R.CANCELLED and run.error == "customer asked"
    assert run.error_type == "RunCancelledError"
    error = next(e for e in effects if isinstance(e, Emit) and e.kind == "workflow:error")
    assert error.fields["status"] == "cancelled"


def test_cancel_compensates_completed_steps_and_ends_cancelled() -> None:
    run, p, memo = new_run(SAGA), plan(SAGA), Memo()
    decide(run, p, Started(), NOW, memo)
    decide(run, p, ok("flight"), NOW, memo)
    run.cancel_reason = "stop"  # seen while `hotel` runs: it is cancelled when it returns
    effects = decide(run, p, AttemptEnded("hotel", 0, error=RuntimeError("interrupted")), NOW, memo)
    assert kinds(effects)[-1] == "compensate:flight#1"
    assert run.steps[1].status is S.CANCELLED
    effects = decide(run, p, CompensationEnded("flight", 0, data_json="{}"), NOW, memo)
    assert run.status is R.CANCELLED and isinstance(effects[-1], Done)


def test_no_further_step_starts_once_a_cancel_is_seen() -> None:
    run, p, memo = new_run(TWO), plan(TWO), Memo()
    decide(run, p, Started(), NOW, memo)
    run.cancel_reason = "stop"
    effects = decide(run, p, ok("a"), NOW, memo)
    assert not any(isinstance(e, Invoke) for e in effects)
    assert run.status is R.CANCELLED and run.steps[0].status is S.COMPLETED


def test_a_signal_completes_the_waiting_step_and_goes_on() -> None:
    run, p, memo = new_run(TWO), plan(TWO), Memo()
    decide(run, p, Started(), NOW, memo)
    effects = decide(run, p, AttemptEnded("a", 0, signal="approval", data_json="{}"), NOW, memo)
    assert kinds(effects) == ["save['a']", "log", "done"] and run.status is R.SUSPENDED
    effects = decide(run, p, Signalled("approval", '{"ok": true}'), NOW, memo)
    assert kinds(effects) == ["outputs", "save['a']", "handler:b#1"]
    assert run.steps[0].output_json == '{"ok": true}'


def test_the_core_imports_no_io() -> None:
    """The machine decides; it never waits, reads the clock, starts a thread or stores."""
    forbidden = {"asyncio", "threading", "time", "sqlite3", "socket", "os", "random", "concurrent"}
    core = Path(__file__).resolve().parents[2] / "flux" / "core"
    for path in sorted(core.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.level and (node.module or "").startswith("storage"):
                    pytest.fail(f"{path.name} imports the storage")
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_a_cancel_that_arrives_during_a_failures_rollback_leaves_it_rolled_back() -> None:
    run, p, memo = new_run(SAGA), plan(SAGA), Memo()
    decide(run, p, Started(), NOW, memo)
    decide(run, p, ok("flight"), NOW, memo)
    decide(run, p, AttemptEnded("hotel", 0, error=FatalError("full")), NOW, memo)
    run.cancel_reason = "too late"  # the compensations are not interrupted, the outcome stays
    decide(run, p, CompensationEnded("flight", 0, data_json="{}"), NOW, memo)
    assert run.status is R.ROLLED_BACK and run.error == "full"
