"""`flux runs retry|signal|cancel` write `workflow:action` (`by: "cli"`) to the trace named by
`--trace` or FLUX_TRACE, as the dashboard does (SPEC §12); a refused action writes none."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flux.cli import main
from flux.events import EventType, check

FLOWS = textwrap.dedent(
    """
    from pathlib import Path
    from flux import FatalError, Flux, create_workflow

    def pay(ctx):
        if Path(ctx.input["gate"]).exists():
            raise FatalError("gate closed")
        return "paid"

    flaky = create_workflow("cli-flaky").step("fetch", lambda ctx: 1).step("pay", pay)
    approval = create_workflow("cli-approval").step("ask", lambda ctx: Flux.wait("approval"))
    """
)


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cli_action_flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cli_action_flows", raising=False)
    monkeypatch.delenv("FLUX_TRACE", raising=False)
    import cli_action_flows  # type: ignore[import-not-found]

    from flux import FluxEngine

    gate = tmp_path / "gate"
    gate.touch()
    url = f"sqlite:///{tmp_path / 'flux.db'}"
    with FluxEngine(storage=url) as engine:
        assert engine.execute_sync(cli_action_flows.flaky, {"gate": str(gate)}, id="f-1").status == "failed"
        for run_id in ("a-1", "a-2"):
            assert engine.execute_sync(cli_action_flows.approval, {}, id=run_id).status == "suspended"
    gate.unlink()
    return url


def _events(trace: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]


def _actions(trace: Path) -> list[dict[str, Any]]:
    if not trace.exists():
        return []
    return [ev for ev in _events(trace) if ev["type"] == EventType.WORKFLOW_ACTION.value]


def test_retry_writes_its_action_ahead_of_the_engines_events(url: str, tmp_path: Path) -> None:
    trace = tmp_path / "t.ndjson"
    argv = ["runs", "retry", "f-1", "pay", "--workflow", "cli_action_flows:flaky"]
    assert main([*argv, "--storage", url, "--trace", str(trace)]) == 0
    [ev] = _actions(trace)
    assert (ev["action"], ev["by"], ev["stepName"], ev["workflowName"]) == (
        "retry",
        "cli",
        "pay",
        "cli-flaky",
    )
    assert check(ev) == []
    ordered = sorted(_events(trace), key=lambda e: e["seq"])  # what the viewer does
    assert ordered[0]["type"] == "workflow:action" and ordered[1]["type"] == "workflow:resume"
    assert ordered[0]["timestamp"] <= ordered[1]["timestamp"]


def test_signal_and_cancel_write_theirs_with_flux_trace(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "env.ndjson"
    monkeypatch.setenv("FLUX_TRACE", str(trace))
    sig = [
        "runs",
        "signal",
        "a-1",
        "approval",
        "--payload",
        '{"ok": 1}',
        "--workflow",
        "cli_action_flows:approval",
    ]
    assert main([*sig, "--storage", url]) == 0
    cancel = ["runs", "cancel", "a-2", "--reason", "not needed", "--workflow", "cli_action_flows:approval"]
    assert main([*cancel, "--storage", url]) == 0
    signal_ev, cancel_ev = _actions(trace)
    assert (signal_ev["action"], signal_ev["signal"], signal_ev["data"], signal_ev["by"]) == (
        "signal",
        "approval",
        {"ok": 1},
        "cli",
    )
    assert (cancel_ev["action"], cancel_ev["reason"], cancel_ev["workflowId"]) == (
        "cancel",
        "not needed",
        "a-2",
    )


def test_a_refused_action_writes_nothing(url: str, tmp_path: Path) -> None:
    trace = tmp_path / "t.ndjson"
    sig = ["runs", "signal", "a-1", "other", "--workflow", "cli_action_flows:approval"]
    assert main([*sig, "--storage", url, "--trace", str(trace)]) == 1
    assert _actions(trace) == []


def test_without_a_trace_nothing_is_written(url: str, tmp_path: Path) -> None:
    assert main(["runs", "cancel", "a-1", "--workflow", "cli_action_flows:approval", "--storage", url]) == 0
    assert list(tmp_path.glob("*.ndjson")) == []
