"""`flux runs cancel` (SPEC §9) and `flux worker` exiting non-zero when a worker stops,
against a real SQLite file."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from flux.cli import main

FLOWS = textwrap.dedent(
    """
    from flux import Flux, create_workflow

    UNDONE = []

    approval = (
        create_workflow("cancel-approval")
        .step("reserve", lambda ctx: "seat", compensate=lambda ctx: UNDONE.append("reserve"))
        .step("ask", lambda ctx: Flux.wait("approval"))
    )
    done = create_workflow("cancel-done").step("a", lambda ctx: 1)
    empty = create_workflow("cancel-empty")
    """
)


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cancel_flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cancel_flows", raising=False)
    import cancel_flows  # type: ignore[import-not-found]

    from flux import FluxEngine

    url = f"sqlite:///{tmp_path / 'flux.db'}"
    with FluxEngine(storage=url) as engine:
        assert engine.execute_sync(cancel_flows.approval, {}, id="ap-1").status == "suspended"
        assert engine.execute_sync(cancel_flows.done, {}, id="d-1").status == "completed"
        engine.start_sync(cancel_flows.done, {}, id="q-1")
    return url


def test_cancel_a_suspended_run_compensates_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["runs", "cancel", "ap-1", "--reason", "customer asked", "--workflow",
                 "cancel_flows:approval", "--storage", url])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    import cancel_flows

    assert cancel_flows.UNDONE == ["reserve"]
    assert main(["runs", "show", "ap-1", "--storage", url, "--json"]) == 0
    assert '"status": "cancelled"' in capsys.readouterr().out


def test_cancel_needs_the_workflow_once_steps_have_run(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "cancel", "ap-1", "--storage", url]) == 1
    assert "--workflow" in capsys.readouterr().err
    assert main(["runs", "cancel", "q-1", "--storage", url]) == 0  # nothing ran: no workflow needed


def test_cancel_a_finished_run_is_an_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "cancel", "d-1", "--storage", url]) == 1
    assert "already completed" in capsys.readouterr().err


def test_a_worker_that_stops_on_an_error_exits_non_zero(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "cancel_flows:empty", "--storage", url, "--burst"]) == 1
    assert "a worker stopped" in capsys.readouterr().err
