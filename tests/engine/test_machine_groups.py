"""flux.core.groups as tables: a group hands out its members at once, takes their outcomes
in any order, and decides the group's end, with no engine, storage or loop."""

from __future__ import annotations

import json
from typing import Any

from flux import Backoff, RunStatus, StepStatus, commit, create_workflow, step
from flux.core import Memo, Plan, decide, plan_of
from flux.core.messages import AttemptEnded, Interrupt, Invoke, ItemsEnded, Proceed, Proceeded, Save, Started
from flux.records import RunRecord, StepRecord

R, S = RunStatus, StepStatus
NOW = 1_000.0


def plan(flow: Any) -> Plan:
    return plan_of(flow, default_retries=0, default_timeout=None, default_backoff=Backoff(),
                   traced=False, hooks=frozenset(), max_crashes=3)  # fmt: skip


def new_run(flow: Any) -> RunRecord:
    return RunRecord(id="r", name=flow.name, status=R.RUNNING, input_json="{}",
                     steps=[StepRecord(s.name, s.kind) for s in flow.steps], created_at=NOW)  # fmt: skip


def invokes(effects: list[Any]) -> list[tuple[str, bool]]:
    return [(e.step, e.concurrent) for e in effects if isinstance(e, Invoke)]


def noop(ctx: Any) -> None:
    return None


FLOW = create_workflow("g").parallel("g", step("a", noop), step("b", noop)).step("after", noop)


def test_a_group_hands_out_every_branch_at_once_on_the_data_of_its_start() -> None:
    run, p, memo = new_run(FLOW), plan(FLOW), Memo()
    run.data_json = '{"n": 1}'
    out = decide(run, p, Started(), NOW, memo)
    assert invokes(out) == [("a", True), ("b", True)]
    assert {e.data_json for e in out if isinstance(e, Invoke)} == {'{"n": 1}'}
    assert run.steps[0].status is S.RUNNING and run.steps[0].data_before == '{"n": 1}'


def test_outcomes_in_any_order_then_the_merge_then_the_next_step() -> None:
    run, p, memo = new_run(FLOW), plan(FLOW), Memo()
    decide(run, p, Started(), NOW, memo)
    out = decide(
        run,
        p,
        AttemptEnded("b", 0.1, output_json='"B"', delta_json='{"set": {"b": 2}, "del": []}'),
        NOW,
        memo,
    )
    assert invokes(out) == []  # a is still running
    out = decide(
        run,
        p,
        AttemptEnded("a", 0.1, output_json='"A"', delta_json='{"set": {"a": 1}, "del": []}'),
        NOW,
        memo,
    )
    assert invokes(out) == [("after", False)]
    assert run.steps[0].status is S.COMPLETED
    assert json.loads(run.steps[0].output_json or "") == {"a": "A", "b": "B"}
    assert json.loads(run.data_json) == {"a": 1, "b": 2}


def test_a_branch_failing_for_good_interrupts_the_others_and_the_run_fails_once_they_stop() -> None:
    run, p, memo = new_run(FLOW), plan(FLOW), Memo()
    decide(run, p, Started(), NOW, memo)
    out = decide(run, p, AttemptEnded("a", 0.1, error=ValueError("no")), NOW, memo)
    assert [e.steps for e in out if isinstance(e, Interrupt)] == [("b",)]
    assert run.status is R.RUNNING  # not before b has stopped
    decide(run, p, AttemptEnded("b", 0.1, error=RuntimeError("cancelled")), NOW, memo)
    assert run.status is R.FAILED
    assert [s.status for s in run.steps] == [S.FAILED, S.FAILED, S.CANCELLED, S.PENDING]


def test_commit_branches_each_have_their_start_stored_on_its_own() -> None:
    flow = create_workflow("c").parallel("g", commit("c1", noop), commit("c2", noop))
    run, p, memo = new_run(flow), plan(flow), Memo()
    out = decide(run, p, Started(), NOW, memo)
    assert isinstance(out[-1], Proceed) and out[-1].step == "c1"  # after the group's own save
    out = decide(run, p, Proceeded("c1"), NOW, memo)
    assert isinstance(out[0], Save) and out[0].steps == ("c1",)
    assert invokes(out) == [("c1", True)]
    assert isinstance(out[-1], Proceed) and out[-1].step == "c2"


def test_a_map_stores_its_items_with_their_records_then_starts_as_many_as_allowed() -> None:
    flow = create_workflow("m").map("m", noop, items=lambda ctx: [], max_concurrency=2)
    run, p, memo = new_run(flow), plan(flow), Memo()
    out = decide(run, p, Started(), NOW, memo)
    assert [(e.step, e.what) for e in out if isinstance(e, Invoke)] == [("m", "items")]
    out = decide(run, p, ItemsEnded("m", "[1,2,3]", 3), NOW, memo)
    saves = [e for e in out if isinstance(e, Save)]
    assert saves[0].steps == ("m", "m[0]", "m[1]", "m[2]") and saves[0].indexes == (0, 1, 2, 3)
    assert invokes(out) == [("m[0]", True), ("m[1]", True)]
    out = decide(run, p, AttemptEnded("m[1]", 0.1, output_json="20"), NOW, memo)
    assert invokes(out) == [("m[2]", True)]
