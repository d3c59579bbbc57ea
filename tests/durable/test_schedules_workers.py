"""Three real `flux worker` processes on one SQLite file (and on PostgreSQL) and a schedule
`every=1`: each slot runs exactly once, none is skipped; then every worker is stopped for
5 s and three new ones start: `catch_up="latest"` runs the most recent missed slot and skips the older ones
(SPEC §10, issue 10)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from flux import FluxEngine, FluxSilentLogger
from flux.events import EventType
from flux.schedules import slot_id

from ..services import postgres_url_or_skip
from .conftest import PYTHONPATH
from .schedule_flow import flow

OUTAGE = 5.0  # seconds with no worker: the slots in it are missed


def slot_of(run_id: str) -> int:
    schedule_id, _, slot = run_id.rpartition("@")
    assert schedule_id == "tick", run_id
    return int(datetime.fromisoformat(slot.replace("Z", "+00:00")).timestamp())


class Workers:
    def __init__(self, tmp: Path, url: str, effects: Path) -> None:
        self.tmp, self.url, self.effects = tmp, url, effects
        self.procs: list[subprocess.Popen[str]] = []
        self.started = 0

    def start(self, n: int) -> list[subprocess.Popen[str]]:
        procs = []
        for _ in range(n):
            self.started += 1
            argv = [sys.executable, "-m", "flux.cli", "worker", "tests.durable.schedule_flow:flow",
                    "--storage", self.url, "--poll", "0.05", "--grace", "30",
                    "--trace", str(self.tmp / f"trace-{self.started}.ndjson")]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": PYTHONPATH, "FLUX_TEST_EFFECTS": str(self.effects)}
            procs.append(
                subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            )
        self.procs.extend(procs)
        # A worker opens its trace file after it installs its SIGTERM handler: once all files
        # exist, every worker is working (and a SIGTERM stops it gracefully).
        traces = [self.tmp / f"trace-{i}.ndjson" for i in range(self.started - n + 1, self.started + 1)]
        give_up = time.monotonic() + 120
        while not all(t.exists() for t in traces):
            for p in procs:
                assert p.poll() is None, p.communicate()[1]
            assert time.monotonic() < give_up, "the workers did not start within 120 s"
            time.sleep(0.02)
        return procs

    def stop(self, procs: list[subprocess.Popen[str]]) -> list[str]:
        """SIGTERM: each finishes the run in hand and exits; their stderr."""
        for p in procs:
            p.send_signal(signal.SIGTERM)
        errs = []
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            errs.append(err)
        return errs

    def ran(self) -> list[str]:
        if not self.effects.exists():
            return []
        return [line.split()[0] for line in self.effects.read_text().splitlines()]

    def until(self, done: int, procs: list[subprocess.Popen[str]]) -> None:
        """Until the effects file holds `done` runs (the runs are the event awaited)."""
        give_up = time.monotonic() + 120
        while len(self.ran()) < done:
            for p in procs:
                assert p.poll() is None, p.communicate()[1]
            assert time.monotonic() < give_up, f"only {len(self.ran())} runs after 120 s"
            time.sleep(0.05)

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.fixture(params=["sqlite", "postgres"])
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workers]:
    url = f"sqlite:///{tmp_path / 'flux.db'}" if request.param == "sqlite" else postgres_url_or_skip(request)
    w = Workers(tmp_path, url, tmp_path / "effects.txt")
    yield w
    w.kill_all()


def test_three_workers_run_each_slot_once_then_catch_up_latest(workers: Workers, tmp_path: Path) -> None:
    with FluxEngine(workers.url, logger=FluxSilentLogger()) as engine:
        engine.schedule_sync(flow, every=1, id="tick", catch_up="latest")

    first = workers.start(3)
    workers.until(6, first)
    workers.stop(first)
    before = workers.ran()
    stopped_at = time.time()

    # Every slot from the first to the last ran exactly once, in one of three processes.
    counts = Counter(slot_of(r) for r in before)
    assert max(counts.values()) == 1, counts
    slots = sorted(counts)
    assert slots == list(range(slots[0], slots[-1] + 1)), slots
    assert len(slots) >= 6

    time.sleep(OUTAGE)  # the outage itself: real time with no worker, nothing to await
    second = workers.start(3)
    workers.until(len(before) + 4, second)
    errs = workers.stop(second)
    after = workers.ran()[len(before) :]

    counts = Counter(slot_of(r) for r in after)
    assert max(counts.values()) == 1, counts
    resumed = sorted(counts)
    assert resumed == list(range(resumed[0], resumed[-1] + 1)), resumed  # no gap after the restart
    last_before, caught_up = slots[-1], resumed[0]
    skipped = caught_up - last_before - 1
    # The slots of the outage were missed: the most recent one ran (late), the older ones not.
    assert skipped >= int(OUTAGE) - 2, (last_before, resumed)
    with FluxEngine(workers.url, logger=FluxSilentLogger()) as engine:
        runs = {r.id: r for r in engine.list_sync(limit=1000)}
        (schedule,) = engine.schedules_sync()
    assert len(runs) == len(before) + len(after)
    assert all(r.status.value == "completed" for r in runs.values())
    late = runs[slot_id("tick", caught_up)]
    assert late.created_at is not None
    assert late.created_at.timestamp() >= caught_up + 1  # started after its slot had passed
    assert late.created_at.timestamp() > stopped_at + OUTAGE
    assert schedule.last_slot is not None and schedule.last_slot.timestamp() >= resumed[-1]
    # The worker that caught up said how many missed slots it skipped.
    said = [line for err in errs for line in err.splitlines() if "missed slot(s) not run" in line]
    assert len(said) == 1 and f"schedule 'tick': {skipped} missed slot(s) not run" in said[0], said

    # Each run's workflow:start, in whichever process's trace, names its schedule and slot.
    starts = [
        e
        for trace in tmp_path.glob("trace-*.ndjson")
        for e in map(json.loads, trace.read_text().splitlines())
        if e["type"] == EventType.WORKFLOW_START
    ]
    assert sorted(e["workflowId"] for e in starts) == sorted(runs)
    for e in starts:
        assert e["meta"]["schedule"] == {"id": "tick", "slot": e["workflowId"].rpartition("@")[2]}
