"""``flux dev --demo`` gives the run page something to draw: its steps take tens to hundreds
of milliseconds (viewer/demo.py paces the examples' instantaneous handlers)."""

from __future__ import annotations

import json
from pathlib import Path

from viewer.demo import PACE_MS, SCENARIOS, run_demo, step_ms


def test_the_demos_steps_take_realistic_times(tmp_path: Path) -> None:
    trace = run_demo(tmp_path / ".flux" / "trace.ndjson")
    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    done = [e for e in events if e["type"] == "step:complete"]
    assert done
    for e in done:  # a paced step sleeps first: its measured duration is at least that
        assert e["duration"] >= step_ms(e["workflowName"], e["stepName"]), e
    assert min(e["duration"] for e in done) >= PACE_MS[0]


def test_the_pace_of_a_step_is_stable_and_spread() -> None:
    paces = {step_ms("wf", f"step-{i}") for i in range(200)}
    assert step_ms("wf", "step-1") == step_ms("wf", "step-1")
    assert min(paces) >= PACE_MS[0] and max(paces) <= PACE_MS[1]
    assert max(paces) - min(paces) > (PACE_MS[1] - PACE_MS[0]) / 2


def test_the_demo_is_a_list_of_scenarios() -> None:
    assert all(s.paced for s in SCENARIOS) and len({s.stem for s in SCENARIOS}) == len(SCENARIOS)
