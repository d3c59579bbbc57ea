"""The examples in ``examples/``: run for real as scripts, and in-process on a fresh engine.

Each script runs as ``python examples/<name>.py`` in a temporary folder, with its trace,
uploads, reports and database redirected there through ``FLUX_TRACE``, ``FLUX_UPLOADS``,
``FLUX_REPORTS`` and ``FLUX_DB``; the test checks its exit code, key lines of its output
and the event types in its trace. The in-process tests import each module and await its
``run(engine)`` on an engine with a ``MemoryTraceSink``, to check statuses precisely.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from flux import (
    FluxEngine,
    FluxResult,
    FluxSilentLogger,
    MemoryTraceSink,
    RunStateError,
    TraceEvent,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_"))


# ---------------------------------------------------------------- helpers


def load(name: str) -> ModuleType:
    """Import examples/<name>.py under a unique name (registered, so dataclasses work)."""
    module_name = f"flux_examples_test_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def run_in_process(module: ModuleType, **kwargs: Any) -> tuple[list[FluxResult], list[TraceEvent]]:
    """Await `module.run(engine)` on a fresh engine; return its results and trace events."""
    sink = MemoryTraceSink()

    async def go() -> list[FluxResult]:
        engine = FluxEngine(trace=sink, logger=FluxSilentLogger())
        try:
            results: list[FluxResult] = await module.run(engine, **kwargs)
            return results
        finally:
            await engine.close()

    return asyncio.run(go()), sink.events


def statuses(results: list[FluxResult]) -> list[str]:
    return [r.status.value for r in results]


def steps(result: FluxResult) -> dict[str, str]:
    return {s.name: s.status.value for s in result.history}


def events_of(events: list[TraceEvent], run_id: str, kind: str | None = None) -> list[TraceEvent]:
    return [e for e in events if e["workflowId"] == run_id and (kind is None or e["type"] == kind)]


class Script:
    """The outcome of running an example as a script in a temporary folder."""

    def __init__(self, proc: subprocess.CompletedProcess[str], folder: Path) -> None:
        self.proc = proc
        self.folder = folder
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def trace(self) -> list[TraceEvent]:
        path = self.folder / "trace.ndjson"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    @property
    def types(self) -> Counter[str]:
        return Counter(e["type"] for e in self.trace)


def run_script(name: str, folder: Path, *args: str) -> Script:
    env = dict(os.environ)
    env.update(
        {
            "FLUX_TRACE": str(folder / "trace.ndjson"),
            "FLUX_UPLOADS": str(folder / "uploads"),
            "FLUX_REPORTS": str(folder / "reports"),
            "FLUX_DB": str(folder / "flux.db"),
            # The checkout's flux, even if another version is installed.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "PYTHONIOENCODING": "utf-8",
        }
    )
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    return Script(proc, folder)


def test_every_example_is_covered() -> None:
    assert NAMES == sorted(
        [
            "approval",
            "checkout_parallel",
            "event_routing",
            "image_processing",
            "multi_node",
            "order_fulfillment",
            "report_generation",
            "retry_failed_step",
            "scheduled_digest",
            "thumbnails_map",
            "travel_booking",
            "trial_reminders",
        ]
    )


# ---------------------------------------------------------------- as scripts

#: name -> (lines the output must contain, event types the trace must contain)
SCRIPTS: dict[str, tuple[list[str], set[str]]] = {
    "order_fulfillment": (
        [
            "payment    completed (3 attempts)",
            ": rolled_back",
            ": failed",
            "out of stock: 3 x MOUSE-7 asked, 1 left",
            "gateway: 4 calls, 2 charges, refunds ['ch_0002']",
        ],
        {
            "step:retry",
            "step:compensate",
            "workflow:rollback_complete",
            "workflow:complete",
            "workflow:error",
        },
    ),
    "image_processing": (
        ["uploaded: ", "over the limit of 4,000,000"],
        {"step:complete", "step:error", "workflow:error", "workflow:complete"},
    ),
    "report_generation": (
        ["grand total: 809.30", "grand total: 880.09", "unknown region 'atlantis'"],
        {"step:complete", "step:error", "workflow:error", "workflow:complete"},
    ),
    "event_routing": (
        ["(route: auto)", "(route: manual)", "(route: escalate)", "manual_review  skipped"],
        {"step:skipped", "workflow:complete"},
    ),
    "multi_node": (
        ["slack      completed (2 attempts)", "data.deliveries.webhook", "slack: 2 calls, 1 post(s)"],
        {"step:retry", "workflow:complete"},
    ),
    "travel_booking": (
        [": rolled_back", ": rollback_failed", "hotel    compensation_failed"],
        {
            "step:compensate",
            "step:compensate_error",
            "workflow:rollback_start",
            "workflow:rollback_complete",
            "workflow:error",
        },
    ),
    "approval": (
        ["(waiting for 'approval')", "python examples/approval.py approve EXP-3-"],
        {"step:suspend", "signal:received", "workflow:complete"},
    ),
    "trial_reminders": (
        [
            "outcome: {'outcome': 'converted', 'plan': 'team'}",
            "outcome: {'outcome': 'expired'}",
            "upgrade   completed  day 14",
            "fourteen days passed on a VirtualClock",
        ],
        {"step:sleep", "step:wake", "step:suspend", "signal:received", "signal:timeout", "workflow:complete"},
    ),
    "scheduled_digest": (
        [
            "@2026-",
            "completed: digest sent: 17 orders, 1 refund",
            "a week of mornings passed on a VirtualClock",
        ],
        {"workflow:start", "workflow:complete"},
    ),
    "retry_failed_step": (
        [
            "send_invoice    failed (3 attempts)",
            "handler calls: load_customer=1, render_invoice=1, send_invoice=4, archive=1",
        ],
        {"step:retry", "step:error", "workflow:error", "workflow:resume", "workflow:complete"},
    ),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_runs(name: str, tmp_path: Path) -> None:
    if name == "image_processing":
        pytest.importorskip("PIL")
    must_print, must_trace = SCRIPTS[name]
    script = run_script(name, tmp_path)
    assert script.proc.returncode == 0, script.stderr
    for line in must_print:
        assert line in script.stdout, f"{line!r} not in the output:\n{script.stdout}"
    assert "Traceback" not in script.stderr
    missing = must_trace - set(script.types)
    assert not missing, f"trace lacks {missing}: {script.types}"
    for event in script.trace:  # every event names its run and is numbered
        assert event["v"] == 1
        assert event["workflowId"]
        assert event["seq"] >= 1


def test_script_appends_to_an_existing_trace(tmp_path: Path) -> None:
    first = run_script("event_routing", tmp_path)
    assert first.proc.returncode == 0, first.stderr
    count = len(first.trace)
    second = run_script("event_routing", tmp_path)
    assert second.proc.returncode == 0, second.stderr
    assert len(second.trace) == 2 * count
    assert len({e["workflowId"] for e in second.trace}) == 6  # run ids never repeat


def test_order_fulfillment_script_trace(tmp_path: Path) -> None:
    script = run_script("order_fulfillment", tmp_path)
    assert script.proc.returncode == 0, script.stderr
    retries = [e for e in script.trace if e["type"] == "step:retry"]
    assert [(e["stepName"], e["attempt"]) for e in retries] == [("payment", 1), ("payment", 2)]
    assert all("503" in e["error"] for e in retries)
    deducts = [e for e in script.trace if e["type"] == "step:start" and e["stepName"] == "deduct"]
    assert deducts
    assert all(e["commit"] is True for e in deducts)
    assert "attempt 1 failed" in script.stderr  # FluxConsoleLogger writes to stderr


def test_image_processing_script_writes_the_thumbnail(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    script = run_script("image_processing", tmp_path)
    assert script.proc.returncode == 0, script.stderr
    found = list((tmp_path / "uploads").glob("*.png"))
    assert len(found) == 1
    match = re.search(r"uploaded: (.+) \((\d+) bytes\)", script.stdout)
    assert match is not None
    assert Path(tmp_path, match.group(1)).resolve() == found[0].resolve()
    assert int(match.group(2)) == found[0].stat().st_size
    with image.open(found[0]) as img:
        assert max(img.size) == 160


def test_report_generation_script_writes_csv(tmp_path: Path) -> None:
    script = run_script("report_generation", tmp_path)
    assert script.proc.returncode == 0, script.stderr
    with (tmp_path / "reports" / "sales-emea-2026-10.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["sku", "units", "revenue"]
    assert rows[-1] == ["TOTAL", "34", "809.30"]
    assert sum(Decimal(r[2]) for r in rows[1:-1]) == Decimal("809.30")
    assert (tmp_path / "reports" / "sales-apac-2026-10.txt").is_file()
    assert not list((tmp_path / "reports").glob("*atlantis*"))


def test_event_routing_script_skips_two_branches_per_event(tmp_path: Path) -> None:
    script = run_script("event_routing", tmp_path)
    assert script.proc.returncode == 0, script.stderr
    skipped: dict[str, set[str]] = {}
    for e in script.trace:
        if e["type"] == "step:skipped":
            skipped.setdefault(e["workflowId"].split("-")[1], set()).add(e["stepName"])
    assert skipped == {
        "1": {"manual_review", "escalate"},
        "2": {"auto_resolve", "escalate"},
        "3": {"auto_resolve", "manual_review"},
    }


def test_travel_booking_script_compensates_in_reverse(tmp_path: Path) -> None:
    script = run_script("travel_booking", tmp_path)
    assert script.proc.returncode == 0, script.stderr
    by_run: dict[str, list[str]] = {}
    for e in script.trace:
        if e["type"] == "step:compensate":
            by_run.setdefault(e["workflowId"].split("-")[1], []).append(e["stepName"])
    assert by_run == {"rome": ["car", "hotel", "flight"], "budapest": ["car", "flight"]}
    failed = [e for e in script.trace if e["type"] == "step:compensate_error"]
    assert [e["stepName"] for e in failed] == ["hotel", "hotel"]
    assert failed[-1]["status"] == "compensation_failed"
    ends = {
        e["workflowId"].split("-")[1]: e["status"]
        for e in script.trace
        if e["type"] == "workflow:rollback_complete"
    }
    assert ends == {"rome": "rolled_back", "budapest": "rollback_failed"}


def test_approval_script_then_approve_later(tmp_path: Path) -> None:
    script = run_script("approval", tmp_path)
    assert script.proc.returncode == 0, script.stderr
    match = re.search(r"approval\.py approve (EXP-3-\w+)", script.stdout)
    assert match is not None
    waiting = match.group(1)
    suspends = [e for e in script.trace if e["type"] == "step:suspend"]
    assert [e["signal"] for e in suspends] == ["approval", "approval"]
    assert suspends[-1]["workflowId"] == waiting

    # A second process, sharing the SQLite file, approves the claim left waiting.
    later = run_script("approval", tmp_path, "approve", waiting, "--by", "cfo@example.com")
    assert later.proc.returncode == 0, later.stderr
    assert f"expense-approval {waiting}: completed" in later.stdout
    assert '"approved_by": "cfo@example.com"' in later.stdout
    received = [e for e in later.trace if e["type"] == "signal:received"]
    assert received[-1]["workflowId"] == waiting
    assert received[-1]["output"] == {"approved": True, "by": "cfo@example.com"}

    # It is not waiting any more: a second decision is refused, and changes nothing.
    again = run_script("approval", tmp_path, "reject", waiting)
    assert again.proc.returncode == 1
    assert "not suspended" in again.stderr


def test_approval_script_reject(tmp_path: Path) -> None:
    script = run_script("approval", tmp_path)
    match = re.search(r"approval\.py reject (EXP-3-\w+)", script.stdout)
    assert match is not None
    rejected = run_script("approval", tmp_path, "reject", match.group(1), "--reason", "too much")
    assert rejected.proc.returncode == 0, rejected.stderr
    assert f"{match.group(1)}: failed" in rejected.stdout
    assert "rejected by maria@example.com: too much" in rejected.stdout


# ---------------------------------------------------------------- in process


def test_order_fulfillment_in_process() -> None:
    mod = load("order_fulfillment")
    results, events = run_in_process(mod)
    assert statuses(results) == ["completed", "failed", "rolled_back"]
    ok, invalid, no_stock = results
    assert ok.history[1].attempts == 3
    assert ok.outputs["payment"]["attempt"] == "3"
    assert ok.outputs["deduct"]["idempotency_key"] == f"{ok.id}:deduct"
    assert ok.data["total"] == Decimal("99.80")
    assert [e["attempt"] for e in events_of(events, ok.id, "step:retry")] == [1, 2]
    assert invalid.error_type == "FatalError"
    assert invalid.failed_step == "validate"
    assert steps(invalid) == {
        "validate": "failed",
        "payment": "pending",
        "deduct": "pending",
        "confirm": "pending",
    }
    assert not events_of(events, invalid.id, "step:retry")  # a FatalError is not retried
    assert steps(no_stock) == {
        "validate": "completed",
        "payment": "compensated",
        "deduct": "failed",
        "confirm": "pending",
    }
    assert no_stock.failed_step == "deduct"
    assert mod.gateway.refunds == ["ch_0002"]
    assert len(mod.gateway.charges) == 2  # the redelivered ORD-1001 was not charged again
    assert mod.inventory.stock == {"KB-42": 8, "MOUSE-7": 1}
    assert len(mod.mailer.sent) == 1


def test_image_processing_in_process(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    mod = load("image_processing")
    results, _ = run_in_process(mod, upload_dir=tmp_path / "up")
    assert statuses(results) == ["completed", "failed"]
    done, too_large = results
    upload = done.outputs["upload"]
    path = Path(upload["path"])
    assert path.parent == tmp_path / "up"
    assert upload["bytes"] == path.stat().st_size
    assert upload["idempotency_key"] == f"{done.id}:upload"
    assert done.history[2].commit is True
    assert done.data["original"] == {"width": 1600, "height": 1000, "format": "PNG"}
    with image.open(path) as img:
        assert img.size == (160, 100)
    assert too_large.failed_step == "validate"
    assert too_large.error_type == "FatalError"
    assert "3000x2000" in (too_large.error or "")
    assert too_large.history[0].attempts == 1


def test_report_generation_in_process(tmp_path: Path) -> None:
    mod = load("report_generation")
    results, _ = run_in_process(mod, report_dir=tmp_path)
    assert statuses(results) == ["completed", "completed", "failed"]
    emea, apac, unknown = results
    assert emea.data["grand_total"] == Decimal("809.30")
    assert isinstance(emea.data["grand_total"], Decimal)
    assert sum(emea.data["totals"].values()) == emea.data["grand_total"]
    assert apac.data["grand_total"] == Decimal("880.09")
    assert Path(emea.outputs["render"]["csv"]).is_file()
    assert unknown.failed_step == "fetch"
    assert [post[0] for post in mod.team.posts] == ["#sales", "#sales"]


def test_event_routing_in_process() -> None:
    mod = load("event_routing")
    results, events = run_in_process(mod)
    assert statuses(results) == ["completed"] * 3
    taken = {r.data["route"]: steps(r) for r in results}
    assert taken["auto"]["auto_resolve"] == "completed"
    assert taken["auto"]["manual_review"] == taken["auto"]["escalate"] == "skipped"
    assert taken["manual"]["manual_review"] == "completed"
    assert taken["manual"]["auto_resolve"] == taken["manual"]["escalate"] == "skipped"
    assert taken["escalate"]["escalate"] == "completed"
    assert taken["escalate"]["auto_resolve"] == taken["escalate"]["manual_review"] == "skipped"
    assert sum(e["type"] == "step:skipped" for e in events) == 6
    assert [r.outputs["record"]["handled_by"] for r in results] == [
        "auto_resolve",
        "manual_review",
        "escalate",
    ]
    assert mod.helpdesk.pages == ["SEV1: outage"]


def test_multi_node_in_process() -> None:
    mod = load("multi_node")
    results, events = run_in_process(mod)
    assert statuses(results) == ["completed"]
    (result,) = results
    assert [s.attempts for s in result.history] == [1, 1, 2, 1, 1]
    deliveries = result.data["deliveries"]
    assert set(deliveries) == {"email", "slack", "webhook"}
    # The failed attempt's "sending" marker was discarded; the retry's receipt stayed.
    assert deliveries["slack"] == {"ts": "1714000000.000001", "channel": "#ops-alerts", "attempt": 2}
    assert result.outputs["summary"] == {"channels": ["email", "slack", "webhook"], "slack_attempts": 2}
    (retry,) = events_of(events, result.id, "step:retry")
    assert retry["stepName"] == "slack"
    assert retry["errorType"] == "ConnectionResetError"
    ((_, payload),) = mod.webhook.deliveries
    assert payload["already_notified"] == ["email", "slack"]
    assert payload["idempotency_key"] == f"{result.id}:webhook"
    assert len(mod.slack.posts) == 1


def test_travel_booking_in_process() -> None:
    mod = load("travel_booking")
    results, events = run_in_process(mod)
    assert statuses(results) == ["completed", "rolled_back", "rollback_failed"]
    ok, rolled_back, stuck = results
    assert ok.outputs["payment"]["amount"] == Decimal("592.50")
    assert steps(rolled_back) == {
        "flight": "compensated",
        "hotel": "compensated",
        "car": "compensated",
        "payment": "failed",
    }
    assert rolled_back.error_type == "FatalError"
    assert rolled_back.data["cancelled"] == ["car CAR-002", "hotel HOT-002", "flight AIR-002"]
    assert [e["stepName"] for e in events_of(events, rolled_back.id, "step:compensate")] == [
        "car",
        "hotel",
        "flight",
    ]
    assert steps(stuck) == {
        "flight": "compensated",
        "hotel": "compensation_failed",
        "car": "compensated",
        "payment": "failed",
    }
    assert mod.undo_log == [
        (rolled_back.id, "car"),
        (rolled_back.id, "hotel"),
        (rolled_back.id, "flight"),
        (stuck.id, "car"),
        (stuck.id, "flight"),
    ]
    assert mod.hotels.cancel_calls == 3  # rome once; budapest twice (retries=1), then gave up
    assert mod.cards.captured == [("4242-4242-4242-4242", Decimal("592.50"))]


def test_approval_in_process() -> None:
    mod = load("approval")
    sink = MemoryTraceSink()

    async def go() -> tuple[list[FluxResult], FluxResult, FluxResult]:
        engine = FluxEngine(trace=sink, logger=FluxSilentLogger())
        try:
            results: list[FluxResult] = await mod.run(engine)
            waiting = results[-1]
            with pytest.raises(RunStateError):
                await engine.signal(mod.approval_flow, waiting.id, "escalation", {})
            with pytest.raises(RunStateError):  # EXP-1 is completed: not waiting any more
                await engine.signal(mod.approval_flow, results[1].id, "approval", {})
            still = await engine.get(waiting.id)
            rejected = await engine.signal(
                mod.approval_flow, waiting.id, "approval", {"approved": False, "by": "maria", "reason": "no"}
            )
            return results, still, rejected
        finally:
            await engine.close()

    results, still, rejected = asyncio.run(go())
    assert statuses(results) == ["suspended", "completed", "completed", "suspended"]
    first, approved, small, waiting = results
    assert first.id == approved.id
    assert first.waiting_for == "approval"
    assert steps(first)["approval"] == "suspended"
    assert approved.waiting_for is None
    assert approved.outputs["approval"] == {"approved": True, "by": "maria@example.com"}
    assert approved.data["approved_by"] == "maria@example.com"
    assert small.outputs["approval"]["by"] == "policy"
    assert waiting.waiting_for == "approval"
    assert still.status.value == "suspended"  # the wrong signal changed nothing
    assert rejected.status.value == "failed"
    assert rejected.failed_step == "decide"
    assert "rejected by maria: no" in (rejected.error or "")
    assert len(mod.ledger.transfers) == 2  # EXP-1 and EXP-2 were paid, EXP-3 was not
    kinds = [e["type"] for e in events_of(sink.events, first.id)]
    assert kinds.index("step:suspend") < kinds.index("signal:received") < kinds.index("workflow:complete")


def test_retry_failed_step_in_process() -> None:
    mod = load("retry_failed_step")
    results, events = run_in_process(mod)
    assert statuses(results) == ["failed", "completed"]
    failed, retried = results
    assert failed.id == retried.id
    assert failed.failed_step == "send_invoice"
    assert failed.error_type == "ProviderDown"
    assert failed.history[2].attempts == 3
    assert steps(failed)["archive"] == "pending"
    assert dict(mod.calls) == {"load_customer": 1, "render_invoice": 1, "send_invoice": 4, "archive": 1}
    assert set(mod.mail.keys_seen) == {f"{failed.id}:send_invoice"}
    assert len(mod.mail.keys_seen) == 4
    assert retried.data["send_attempts"] == 1  # failed attempts' changes were discarded
    assert retried.outputs["send_invoice"]["message_id"] == "<1.invoice@mail.example>"
    (resume,) = events_of(events, failed.id, "workflow:resume")
    assert resume["meta"]["fromStep"] == "send_invoice"
    after = [e["stepName"] for e in events[events.index(resume) :] if e["type"] == "step:start"]
    assert after == ["send_invoice", "archive"]  # the earlier steps were not run again


@pytest.mark.parametrize("name", NAMES)
def test_run_twice_on_one_engine(name: str, tmp_path: Path) -> None:
    """The demo may run an example again on the same engine: ids never collide."""
    if name == "image_processing":
        pytest.importorskip("PIL")
    mod = load(name)
    kwargs: dict[str, Any] = {}
    if name == "image_processing":
        kwargs["upload_dir"] = tmp_path
    if name == "report_generation":
        kwargs["report_dir"] = tmp_path
    sink = MemoryTraceSink()

    async def go() -> tuple[list[FluxResult], list[FluxResult]]:
        engine = FluxEngine(trace=sink, logger=FluxSilentLogger())
        try:
            return await mod.run(engine, **kwargs), await mod.run(engine, **kwargs)
        finally:
            await engine.close()

    first, second = asyncio.run(go())
    assert statuses(first) == statuses(second)
    assert not {r.id for r in first} & {r.id for r in second}


def test_examples_pass_mypy_strict(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    out, err, _ = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(EXAMPLES)]
    )
    # Only the examples' own errors count here; the engine's are the engine tests' business.
    problems = [
        line
        for line in out.splitlines()
        if ": error:" in line and Path(line.split(":", 1)[0]).resolve().is_relative_to(EXAMPLES)
    ]
    assert not problems, out + err


def test_examples_import_only_flux_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"flux", "PIL"}
    for name in NAMES:
        source = (EXAMPLES / f"{name}.py").read_text(encoding="utf-8")
        imported = re.findall(r"^\s*(?:from|import) ([A-Za-z_][\w]*)", source, re.MULTILINE)
        assert set(imported) <= allowed, f"{name}: {set(imported) - allowed}"
        assert "create_workflow(" in source
        assert "async def run(engine: FluxEngine" in source
        assert 'if __name__ == "__main__":' in source
