"""`flux dev --demo` runs the branch examples (a parallel group, a map) into its SQLite file
and trace: their runs end as the examples say, and their branch events carry ``group`` and
``item`` for the dashboard to draw."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from flux import FluxEngine, FluxResult, FluxSilentLogger
from viewer.demo import run_demo


def test_the_demo_runs_the_parallel_and_map_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = run_demo(tmp_path / ".flux" / "trace.ndjson")
    out = capsys.readouterr().out
    assert "checkout-parallel    3 runs: 1 completed, 1 rolled_back, 1 failed" in out
    assert "thumbnails-map       2 runs: 1 completed, 1 rolled_back" in out

    ids = ["CHK-ada-demo", "CHK-mallory-demo", "CHK-grace-demo", "ALB-holiday-demo", "ALB-broken-demo"]

    async def read() -> list[FluxResult | None]:
        engine = FluxEngine(storage=f"sqlite:///{trace.parent / 'workflows.db'}", logger=FluxSilentLogger())
        try:
            return [await engine.get(run_id) for run_id in ids]
        finally:
            await engine.close()

    runs = asyncio.run(read())
    assert [r.status.value if r else None for r in runs] == [
        "completed",
        "rolled_back",
        "failed",
        "completed",
        "rolled_back",
    ]
    ada, mallory, _, holiday, _ = runs
    assert ada is not None and set(ada.outputs["checks"]) == {"stock", "fraud"}
    assert mallory is not None
    assert {s.name: s.status.value for s in mallory.history}["stock"] == "compensated"
    assert holiday is not None and len(holiday.outputs["thumbnails"]) == 8

    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines() if line]
    mine = [e for e in events if e["workflowId"] in ids]
    branches = [e for e in mine if e.get("stepName") in ("stock", "fraud")]
    assert branches and {e["group"] for e in branches} == {"checks"}
    items = [e for e in mine if str(e.get("stepName", "")).startswith("thumbnails[")]
    assert items and {e["group"] for e in items} == {"thumbnails"}
    assert {e["item"] for e in items if e["workflowId"] == "ALB-holiday-demo"} == set(range(8))
    undone = {(e["workflowId"], e["stepName"]) for e in mine if e["type"] == "step:compensate"}
    assert ("CHK-mallory-demo", "stock") in undone
    assert any(run_id == "ALB-broken-demo" and name.startswith("thumbnails[") for run_id, name in undone)

    # flux dev serves their pages from the demo's trace.
    from starlette.testclient import TestClient

    from viewer.server import create_app

    with TestClient(create_app(trace), base_url="http://127.0.0.1") as client:
        page = client.get("/runs/CHK-mallory-demo")
        assert page.status_code == 200
        assert all(word in page.text for word in ("checks", "stock", "fraud score 93 over the limit"))
        page = client.get("/runs/ALB-holiday-demo")
        assert page.status_code == 200 and "thumbnails" in page.text
