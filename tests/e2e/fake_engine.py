"""Stands in for the engine in the end-to-end tests: appends a run's events to a
trace file with small delays, one ``write`` per line in append mode as the
engine's sink does. Run as ``python -m tests.e2e.fake_engine``.

``--gate FILE`` pauses after the first steps until FILE exists, so that a test
can see the run in progress before letting it finish.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from tests.viewer.factory import SAGA_STEPS, RunWriter, saga_run


def order_run(run_id: str, t0: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A run that retries, skips a branch and completes: (before the gate, after)."""
    w = RunWriter(
        run_id,
        "order-process",
        steps=(("fetch", False), ("payment", False), ("auto", False), ("fulfill", True)),
        t0=t0,
    )
    before = [
        w.start({"order_id": run_id}),
        w.step_start("fetch"),
        w.complete("fetch", {"id": run_id}, {"order": run_id}),
        w.step_start("payment"),
        w.retry("payment", 1, "gateway timeout", "TimeoutError"),
        w.step_start("payment", attempt=2),
    ]
    after = [
        w.complete("payment", {"charged": 42}, {"order": run_id, "paid": True}),
        w.skipped("auto"),
        w.step_start("fulfill", max_retries=0),
        w.complete("fulfill", {"shipped": True}, {"order": run_id, "paid": True, "shipped": True}),
        w.finish({"order": run_id, "paid": True, "shipped": True}),
    ]
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trace", type=Path, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--scenario", choices=["order", "saga"], default="order")
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--gate", type=Path)
    args = parser.parse_args()

    t0 = time.time() * 1000.0
    if args.scenario == "order":
        before, after = order_run(args.run_id, t0)
    else:
        events = saga_run(args.run_id, t0)
        assert len(SAGA_STEPS) == 5
        before, after = events[:10], events[10:]
    args.trace.parent.mkdir(parents=True, exist_ok=True)
    for i, event in enumerate(before + after):
        if i == len(before) and args.gate is not None:
            while not args.gate.exists():  # the test opens the gate when it has seen enough
                time.sleep(0.01)
        event["timestamp"] = time.time() * 1000.0
        if event["type"] in ("workflow:complete", "workflow:error"):
            event["duration"] = event["timestamp"] - t0
        fd = os.open(args.trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, json.dumps(event).encode() + b"\n")
        finally:
            os.close(fd)
        time.sleep(args.delay)


if __name__ == "__main__":
    main()
