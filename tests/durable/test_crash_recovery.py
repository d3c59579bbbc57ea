"""A real process is SIGKILLed inside every step and between every two steps of a 5-step
workflow with a commit; `recover` in a new process finishes the run."""

from __future__ import annotations

import asyncio

import pytest

from flux import FluxEngine, RunStatus, SQLiteStorage

from ..services import needs_stored_identity
from .conftest import Worker

STEPS = ["s1", "s2", "c3", "s4", "s5"]
POINTS = [f"in:{s}" for s in STEPS] + [f"after:{s}" for s in STEPS[:-1]]


def stored_status(worker: Worker, run_id: str) -> RunStatus:
    async def get() -> RunStatus:
        engine = FluxEngine(storage=SQLiteStorage(worker.db))
        try:
            return (await engine.get(run_id)).status
        finally:
            await engine.close()

    return asyncio.run(get())


@pytest.mark.parametrize("point", POINTS)
@needs_stored_identity
def test_kill_then_recover_runs_nothing_twice(worker: Worker, point: str) -> None:
    worker.start_and_kill_when_blocked("execute", "five", "run-1", BLOCK_AT=point)
    assert stored_status(worker, "run-1") is RunStatus.RUNNING

    lines = worker.run("recover")
    assert lines[-1] == "recovered"
    effects = worker.effects_count()
    where, step = point.split(":")
    killed_in = step if where == "in" else None
    if killed_in == "c3":
        # The commit may have happened: it is never called again, and the run fails.
        assert lines[0] == "run-1 failed CommitInterruptedError"
        assert effects[("run-1", "c3", "start")] == 1
        assert all(effects[("run-1", s, "start")] == 0 for s in ("s4", "s5"))
        done_before = ("s1", "s2")
    else:
        assert lines[0] == "run-1 completed -"
        done_before = tuple(STEPS)
    for s in done_before:
        starts = effects[("run-1", s, "start")]
        if s == killed_in:
            assert starts == 2, f"the step in flight ({s}) runs again, once"
            assert effects[("run-1", s, "done")] == 1
        else:
            assert starts == 1, f"{s} ran {starts} times"
            assert effects[("run-1", s, "done")] == 1
    assert stored_status(worker, "run-1") is not RunStatus.RUNNING


@needs_stored_identity
def test_an_interrupted_commit_is_rerun_only_by_retry_step(worker: Worker) -> None:
    worker.start_and_kill_when_blocked("execute", "five", "run-1", BLOCK_AT="in:c3")
    assert worker.run("recover")[0] == "run-1 failed CommitInterruptedError"
    # execute with the same id does not run the commit again either
    assert worker.run("execute", "five", "run-1") == ["run-1 failed CommitInterruptedError"]
    assert worker.run("retry", "run-1", "c3") == ["run-1 completed -"]
    effects = worker.effects_count()
    assert effects[("run-1", "c3", "start")] == 2
    assert effects[("run-1", "c3", "done")] == 1
    assert effects[("run-1", "s1", "start")] == 1 and effects[("run-1", "s5", "done")] == 1


@needs_stored_identity
def test_redelivered_execute_resumes_instead_of_starting_over(worker: Worker) -> None:
    worker.start_and_kill_when_blocked("execute", "five", "run-1", BLOCK_AT="after:s2")
    assert worker.run("execute", "five", "run-1") == ["run-1 completed -"]
    effects = worker.effects_count()
    assert [effects[("run-1", s, "start")] for s in STEPS] == [1, 1, 1, 1, 1]


def test_lease_of_a_killed_process_is_taken_over_after_expiry(worker: Worker) -> None:
    """Seen from another host, the holder's death is invisible: only expiry frees the run."""
    worker.start_and_kill_when_blocked("execute", "five", "run-1", BLOCK_AT="in:s2", LEASE_SECONDS="3")
    assert worker.run("recover", PRETEND_OTHER_HOST="1") == ["recovered"]  # lease still valid
    assert stored_status(worker, "run-1") is RunStatus.RUNNING
    for _ in range(600):  # each call is one wait on the lease; bounded
        lines = worker.run("recover", PRETEND_OTHER_HOST="1")
        if lines != ["recovered"]:
            break
    assert lines[0] == "run-1 completed -"
    assert worker.effects_count()[("run-1", "s1", "start")] == 1


def test_suspended_run_is_signalled_from_another_process(worker: Worker) -> None:
    assert worker.run("execute", "approval", "ap-1") == ["ap-1 suspended -"]
    assert worker.run("signal", "ap-1") == ["ap-1 completed {'by': 'ann'}"]
    effects = worker.effects_count()
    assert effects[("ap-1", "ask", "start")] == 1 and effects[("ap-1", "after", "done")] == 1


@needs_stored_identity
def test_a_rollback_cut_short_by_a_kill_is_finished_by_recover(worker: Worker) -> None:
    """Killed inside the compensation of `car`: recovery compensates `car` again (at least
    once, like a step) and then `flight`, and the run ends rolled back."""
    worker.start_and_kill_when_blocked("execute", "saga", "trip-1", BLOCK_AT="undo:car")
    assert stored_status(worker, "trip-1") is RunStatus.ROLLING_BACK
    assert worker.run("recover") == ["trip-1 rolled_back FatalError", "recovered"]
    effects = worker.effects_count()
    assert effects[("trip-1", "car", "undo-start")] == 2
    assert effects[("trip-1", "car", "undo-done")] == 1
    assert effects[("trip-1", "flight", "undo-done")] == 1
    assert effects[("trip-1", "flight", "done")] == 1 and effects[("trip-1", "car", "done")] == 1
