"""The finished-prefix rule for runs whose definition changed, as a pure function."""

from __future__ import annotations

import pytest

from flux import WorkflowVersionError, create_workflow
from flux.records import RunRecord, StepRecord
from flux.status import RunStatus, StepStatus
from flux.versions import adopt_definition


def run_of(*steps: tuple[str, str, StepStatus]) -> RunRecord:
    records = [StepRecord(n, k, status, started_at=None if status is StepStatus.PENDING else 1.0)
               for n, k, status in steps]  # fmt: skip
    return RunRecord("r", "wf", RunStatus.FAILED, "{}", shape=[[n, k] for n, k, _ in steps], steps=records)


def noop(ctx: object) -> None:
    return None


def test_steps_may_be_added_and_pending_ones_changed() -> None:
    run = run_of(("a", "step", StepStatus.COMPLETED), ("b", "step", StepStatus.PENDING))
    flow = create_workflow("wf").step("a", noop).commit("b2", noop).step("c", noop).version("2")
    adopt_definition(flow, run)
    assert [(s.name, s.kind, s.status) for s in run.steps] == [
        ("a", "step", StepStatus.COMPLETED),
        ("b2", "commit", StepStatus.PENDING),
        ("c", "step", StepStatus.PENDING),
    ]
    assert run.shape == [["a", "step"], ["b2", "commit"], ["c", "step"]] and run.version == "2"


@pytest.mark.parametrize(
    ("flow", "named"),
    [
        (create_workflow("wf").step("x", noop).step("b", noop), "step 'a' (step, #1)"),
        (create_workflow("wf").commit("a", noop).step("b", noop), "now has 'a' (commit)"),
        (
            create_workflow("wf").step("a", noop),
            "step 'b' (step, #2) has already run, but the definition now has nothing",
        ),
    ],
)
def test_a_changed_finished_step_is_refused_and_the_run_untouched(flow: object, named: str) -> None:
    run = run_of(("a", "step", StepStatus.COMPLETED), ("b", "step", StepStatus.FAILED))
    before = run.copy()
    with pytest.raises(WorkflowVersionError, match=named.replace("(", r"\(").replace(")", r"\)")):
        adopt_definition(flow, run)  # type: ignore[arg-type]
    assert run == before
