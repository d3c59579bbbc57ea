"""flux.core.timers: sleeps, timeouts and deadlines as tables of (state, event) -> (state, effects).

Pure: `decide` is called with a record, a plan, an event and a time; no clock is involved.
"""

from __future__ import annotations

from typing import Any

import pytest

from flux import Backoff, RunStatus, StepStatus, create_workflow
from flux.core import Memo, Plan, decide, plan_of
from flux.core.messages import AttemptEnded, Emit, Pause, Resumed, Started, Timer, Woke
from flux.records import RunRecord, StepRecord

from .test_machine import kinds, noop

R, S = RunStatus, StepStatus
NOW = 1_000.0
FLOW = create_workflow("t").step("a", noop).step("b", noop)


def plan(*, inline: float = 0.0) -> Plan:
    return plan_of(FLOW, default_retries=3, default_timeout=None, default_backoff=Backoff(), traced=True,
                   hooks=frozenset(), max_crashes=3, inline_sleep=inline)  # fmt: skip


def run(status: RunStatus = R.RUNNING, **fields: Any) -> RunRecord:
    rec = RunRecord(id="r", name="t", status=status, input_json="{}", created_at=NOW,
                    steps=[StepRecord(s.name, s.kind) for s in FLOW.steps], **fields)  # fmt: skip
    return rec


def started(r: RunRecord, p: Plan) -> None:
    decide(r, p, Started(), NOW, Memo())


def timer(step: str, t: Timer) -> AttemptEnded:
    return AttemptEnded(step, 0.0, data_json="{}", timer=t)


@pytest.mark.parametrize(
    ("t", "inline", "status", "wake", "last", "what"),
    [
        (Timer("sleep", 60), 0.0, R.SUSPENDED, NOW + 60, "done", "sleep"),
        (Timer("sleep", 60), 60.0, R.RUNNING, NOW + 60, "pause", "sleep"),  # within inline_sleep
        (Timer("sleep", until=NOW + 10), 0.0, R.SUSPENDED, NOW + 10, "done", "sleep"),
        (Timer("wait", 60, signal="go"), 3600.0, R.SUSPENDED, NOW + 60, "done", "timeout"),  # never inline
        (
            Timer("wait", 60, signal="go", default_json='"d"'),
            0.0,
            R.SUSPENDED,
            NOW + 60,
            "done",
            'default:"d"',
        ),
    ],
)
def test_a_timer_suspends_the_step_with_its_wake_time(
    t: Timer, inline: float, status: RunStatus, wake: float, last: str, what: str
) -> None:
    p, r = plan(inline=inline), run()
    started(r, p)
    out = decide(r, p, timer("a", t), NOW, Memo())
    assert r.status is status and r.wake_at == wake and r.timer == what
    assert r.steps[0].status is S.SUSPENDED
    assert kinds(out)[0] == "save['a']" and kinds(out)[-1] == last
    if last == "pause":
        assert [e for e in out if isinstance(e, Pause)] == [Pause("a", wake)]
    assert r.waiting_for == (t.signal if status is R.SUSPENDED else None)


def test_a_sleep_until_a_past_moment_completes_the_step_at_once() -> None:
    p, r = plan(), run()
    started(r, p)
    out = decide(r, p, timer("a", Timer("sleep", until=NOW - 5)), NOW, Memo())
    assert kinds(out)[:4] == ["step:sleep", "step:wake", "save['a']", "step:complete"]
    assert r.steps[0].status is S.COMPLETED and r.wake_at is None


@pytest.mark.parametrize(
    ("what", "step", "run_status", "first"),
    [
        ("sleep", S.COMPLETED, R.RUNNING, "step:wake"),
        ('default:{"ok": false}', S.COMPLETED, R.RUNNING, "signal:timeout"),
        ("timeout", S.FAILED, R.FAILED, "signal:timeout"),
    ],
)
def test_woke_at_the_wake_time(what: str, step: StepStatus, run_status: RunStatus, first: str) -> None:
    p, r = plan(), run(R.SUSPENDED, wake_at=NOW, timer=what)
    r.steps[0].status = S.SUSPENDED
    out = decide(r, p, Woke(), NOW, Memo())
    assert r.steps[0].status is step and r.wake_at is None and r.timer is None
    assert first in kinds(out)
    if run_status is R.FAILED:
        assert r.status is R.FAILED and r.error_type == "SignalTimeoutError"
    else:
        assert r.steps[1].status is S.RUNNING  # the next step starts


def test_woke_before_the_wake_time_rests_again() -> None:
    p, r = plan(), run(R.SUSPENDED, wake_at=NOW + 5, timer="sleep")
    r.steps[0].status = S.SUSPENDED
    out = decide(r, p, Woke(), NOW, Memo())
    assert r.status is R.SUSPENDED and kinds(out) == ["save[]", "done"]


def test_woke_at_the_deadline_cancels_the_run() -> None:
    p, r = plan(), run(R.SUSPENDED, wake_at=NOW + 99, timer="sleep", deadline=NOW)
    r.steps[0].status = S.SUSPENDED
    out = decide(r, p, Woke(), NOW, Memo())
    assert r.status is R.CANCELLED and r.error_type == "DeadlineExceededError"
    assert r.steps[0].status is S.CANCELLED and r.wake_at is None
    assert kinds(out)[0] == "workflow:cancel"


def test_a_run_past_its_deadline_does_not_start_its_next_step() -> None:
    p, r = plan(), run(deadline=NOW + 1)
    started(r, p)
    out = decide(r, p, AttemptEnded("a", 0.0, output_json="1", data_json="{}"), NOW + 1, Memo())
    assert r.status is R.CANCELLED and r.error_type == "DeadlineExceededError"
    assert "invoke" not in " ".join(kinds(out)) and "handler:b#1" not in kinds(out)


def test_a_run_taken_over_while_it_slept_in_process_keeps_its_wake_time() -> None:
    p, r = plan(inline=5.0), run(R.RUNNING, wake_at=NOW + 3, timer="sleep")
    r.steps[0].status = S.SUSPENDED
    out = decide(r, p, Resumed("recover", crashed=True), NOW, Memo())
    assert r.steps[0].crashes == 0  # a sleep is no crash of a handler
    assert [e for e in out if isinstance(e, Pause)] == [Pause("a", NOW + 3)]
    r2 = run(R.RUNNING, wake_at=NOW + 3, timer="sleep")
    r2.steps[0].status = S.SUSPENDED
    out = decide(r2, plan(inline=0.0), Resumed("recover", crashed=True), NOW, Memo())
    assert r2.status is R.SUSPENDED and kinds(out)[-1] == "done"


def test_workflow_start_carries_the_deadline_in_ms() -> None:
    p, r = plan(), run(deadline=NOW + 0.5)
    out = decide(r, p, Started(), NOW, Memo())
    start = out[0]
    assert isinstance(start, Emit)
    assert start.fields["meta"]["deadline"] == int((NOW + 0.5) * 1000)
