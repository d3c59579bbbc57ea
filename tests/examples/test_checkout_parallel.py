"""examples/checkout_parallel.py: a parallel group of two checks, on a real SQLite file.

The checkout that passes is completed with both branches' outputs and data; the one whose
fraud check fails for good has its stock reservation released by the saga; the one out of
stock has its fraud check cancelled mid-flight. Every branch event carries ``group``.
"""

from __future__ import annotations

import ast
import asyncio
import re
from decimal import Decimal
from pathlib import Path
from types import ModuleType

from flux import FluxEngine, FluxResult, FluxSilentLogger, MemoryTraceSink, TraceEvent

from .test_examples import ROOT, events_of, load, run_script, statuses, steps


def run_on_sqlite(tmp_path: Path) -> tuple[ModuleType, list[FluxResult], list[TraceEvent], list[FluxResult]]:
    """Run the example on an engine over a SQLite file; then read the runs back from the file
    with a second engine (what another process would see)."""
    mod = load("checkout_parallel")
    sink = MemoryTraceSink()
    url = f"sqlite:///{tmp_path / 'flux.db'}"

    async def go() -> tuple[list[FluxResult], list[FluxResult]]:
        engine = FluxEngine(storage=url, trace=sink, logger=FluxSilentLogger())
        try:
            results: list[FluxResult] = await mod.run(engine)
        finally:
            await engine.close()
        reader = FluxEngine(storage=url, logger=FluxSilentLogger())
        try:
            stored = [await reader.get(r.id) for r in results]
        finally:
            await reader.close()
        return results, [s for s in stored if s is not None]

    results, stored = asyncio.run(go())
    return mod, results, sink.events, stored


def test_checkout_parallel_outcomes(tmp_path: Path) -> None:
    mod, results, events, stored = run_on_sqlite(tmp_path)
    assert statuses(results) == ["completed", "rolled_back", "failed"]
    assert statuses(stored) == statuses(results)  # as stored in the file
    ok, fraud, no_stock = results

    # Both branches' outputs, by name and under the group; both branches' data, merged.
    assert ok.outputs["checks"] == {"stock": ok.outputs["stock"], "fraud": ok.outputs["fraud"]}
    assert ok.outputs["stock"] == {"reservation": f"{ok.id}:stock", "sku": "KB-42", "quantity": 2}
    assert ok.outputs["fraud"] == {"score": 12}
    assert ok.data == {"total": Decimal("99.80"), "reservation": f"{ok.id}:stock", "risk": 12}
    assert ok.outputs["charge"]["risk"] == 12  # the step after the group reads the merged data
    assert ok.outputs["confirm"] == "ORD-2001: 2 x KB-42 reserved, risk 12, charged 99.80"
    assert stored[0].outputs == ok.outputs

    # The fraud branch failed for good; the completed stock branch was compensated.
    assert fraud.failed_step == "checks"
    assert fraud.error_type == "FatalError"
    assert "fraud score 93 over the limit of 80" in (fraud.error or "")
    assert steps(fraud) == {
        "validate": "completed",
        "checks": "failed",
        "stock": "compensated",
        "fraud": "failed",
        "charge": "pending",
        "confirm": "pending",
    }
    assert steps(stored[1]) == steps(fraud)
    assert mod.inventory.released == [f"{fraud.id}:stock"]

    # Out of stock: the fraud check still waiting for its scorer was cancelled, never finished.
    assert no_stock.failed_step == "checks"
    assert "out of stock: 4 x MOUSE-7 asked, 1 left" in (no_stock.error or "")
    assert steps(no_stock)["stock"] == "failed"
    assert steps(no_stock)["fraud"] == "cancelled"
    assert mod.scorer.started == ["ORD-2001", "ORD-2002", "ORD-2003"]
    assert mod.scorer.finished == ["ORD-2001", "ORD-2002"]

    # Only the completed checkout was charged; only its reservation is still held.
    assert [key for key, _ in mod.gateway.charges] == [f"{ok.id}:charge"]
    assert mod.inventory.stock == {"KB-42": 8, "MOUSE-7": 1}

    # The trace: branch events carry the group's name; the saga undid the stock branch.
    for run in results:
        for e in events_of(events, run.id):
            if e.get("stepName") in ("stock", "fraud"):
                assert e["group"] == "checks", e
            elif "stepName" in e:
                assert e.get("group") is None, e
    undone = events_of(events, fraud.id, "step:compensate")
    assert [(e["stepName"], e["group"], e["status"]) for e in undone] == [("stock", "checks", "compensated")]
    cancelled = [e for e in events_of(events, no_stock.id, "step:error") if e["stepName"] == "fraud"]
    assert [e["status"] for e in cancelled] == ["cancelled"]
    assert not events_of(events, no_stock.id, "step:compensate")


def test_checkout_parallel_branches_overlap(tmp_path: Path) -> None:
    """The two checks ran at once: each started before the other ended."""
    _, results, events, _ = run_on_sqlite(tmp_path)
    kinds = [(e["type"], e.get("stepName")) for e in events_of(events, results[0].id)]
    started = max(kinds.index(("step:start", "stock")), kinds.index(("step:start", "fraud")))
    ended = min(kinds.index(("step:complete", "stock")), kinds.index(("step:complete", "fraud")))
    assert started < ended


def test_the_readme_section_shows_this_example() -> None:
    """The README's "Parallel steps and maps" code is valid Python, and its checkout is this
    example's shape: a validate step, a group of the stock and fraud checks, a charge commit."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Parallel steps and maps\n") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    tree = ast.parse(code[1])
    calls = {
        n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    assert {"parallel", "map", "commit", "step"} <= calls
    flow = load("checkout_parallel").checkout_flow
    assert flow.shape() == [
        ["validate", "step"],
        ["checks", "parallel"],
        ["stock", "step"],
        ["fraud", "step"],
        ["charge", "commit"],
        ["confirm", "step"],
    ]


def test_checkout_parallel_script(tmp_path: Path) -> None:
    script = run_script("checkout_parallel", tmp_path)
    assert script.proc.returncode == 0, script.stderr
    assert "Traceback" not in script.stderr
    for line in (
        ": completed",
        ": rolled_back",
        ": failed",
        "stock     compensated",
        "fraud     cancelled",
        "stock left: {'KB-42': 8, 'MOUSE-7': 1} (released: 1 reservation)",
        "fraud checks started: 3, finished: 2",
        "charges: 1",
    ):
        assert line in script.stdout, f"{line!r} not in the output:\n{script.stdout}"
    assert (tmp_path / "flux.db").is_file()  # stored in the SQLite file of FLUX_DB
    groups = {e.get("group") for e in script.trace if e.get("stepName") in ("stock", "fraud")}
    assert groups == {"checks"}
    assert {"step:compensate", "workflow:rollback_complete", "workflow:complete"} <= set(script.types)
