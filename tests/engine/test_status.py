"""flux.status: the run and step states and the one table of legal transitions."""

from __future__ import annotations

import pytest

from flux import RunStatus, StepStatus
from flux.status import (
    RUN_TERMINAL,
    RUN_TRANSITIONS,
    STEP_DONE,
    STEP_TRANSITIONS,
    IllegalTransition,
    check_run,
    check_step,
)

R, S = RunStatus, StepStatus


def test_run_status_members_are_the_contract_strings() -> None:
    assert [s.value for s in RunStatus] == [
        "pending",
        "running",
        "suspended",
        "completed",
        "failed",
        "rolling_back",
        "rolled_back",
        "rollback_failed",
        "cancelled",  # SPEC §9
    ]
    completed: str = R.COMPLETED
    assert completed == "completed"
    assert isinstance(R.FAILED, str)
    assert str(R.ROLLED_BACK) == "rolled_back"
    assert f"{R.SUSPENDED}" == "suspended"


def test_step_status_members_are_the_contract_strings() -> None:
    assert [s.value for s in StepStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "skipped",
        "suspended",
        "compensating",
        "compensated",
        "compensation_failed",
        "cancelled",  # SPEC §9
    ]
    skipped: str = S.SKIPPED
    assert skipped == "skipped" and str(S.COMPENSATION_FAILED) == "compensation_failed"


def test_every_state_has_a_row_in_the_tables() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus)
    assert set(STEP_TRANSITIONS) == set(StepStatus)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (R.PENDING, R.RUNNING),
        (R.RUNNING, R.SUSPENDED),
        (R.RUNNING, R.COMPLETED),
        (R.RUNNING, R.FAILED),
        (R.RUNNING, R.ROLLING_BACK),
        (R.SUSPENDED, R.RUNNING),
        (R.ROLLING_BACK, R.ROLLED_BACK),
        (R.ROLLING_BACK, R.ROLLBACK_FAILED),
        (R.FAILED, R.RUNNING),
    ],
)
def test_legal_run_transitions_return_the_new_state(current: RunStatus, new: RunStatus) -> None:
    assert check_run(current, new) is new


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (R.PENDING, R.COMPLETED),
        (R.SUSPENDED, R.COMPLETED),
        (R.COMPLETED, R.FAILED),
        (R.ROLLED_BACK, R.COMPLETED),
        (R.ROLLING_BACK, R.COMPLETED),
        (R.FAILED, R.ROLLED_BACK),
    ],
)
def test_illegal_run_transitions_raise(current: RunStatus, new: RunStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"{current.value} -> {new.value}"):
        check_run(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.PENDING, S.RUNNING),
        (S.PENDING, S.SKIPPED),
        (S.RUNNING, S.COMPLETED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.SUSPENDED),
        (S.SUSPENDED, S.COMPLETED),
        (S.COMPLETED, S.COMPENSATING),
        (S.COMPENSATING, S.COMPENSATED),
        (S.COMPENSATING, S.COMPENSATION_FAILED),
    ],
)
def test_legal_step_transitions_return_the_new_state(current: StepStatus, new: StepStatus) -> None:
    assert check_step(current, new) is new


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.PENDING, S.COMPLETED),
        (S.SKIPPED, S.RUNNING),
        (S.FAILED, S.COMPLETED),
        (S.COMPENSATED, S.COMPLETED),
        (S.COMPLETED, S.FAILED),
        (S.PENDING, S.COMPENSATING),
    ],
)
def test_illegal_step_transitions_raise(current: StepStatus, new: StepStatus) -> None:
    with pytest.raises(IllegalTransition):
        check_step(current, new)


def test_terminal_and_done_sets() -> None:
    assert RUN_TERMINAL == {R.COMPLETED, R.FAILED, R.ROLLED_BACK, R.ROLLBACK_FAILED, R.CANCELLED}
    assert STEP_DONE == {S.COMPLETED, S.SKIPPED}
    # A finished run never changes its outcome without running again first.
    for status in RUN_TERMINAL:
        assert not RUN_TRANSITIONS[status] & RUN_TERMINAL
        assert R.RUNNING in RUN_TRANSITIONS[status]
