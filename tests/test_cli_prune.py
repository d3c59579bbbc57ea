"""Retention: `engine.prune` / `prune_sync` and `flux runs prune`, against real SQLite files."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flux import Flux, FluxEngine, FluxError, SQLiteStorage, create_workflow
from flux.cli import main
from flux.testing import VirtualClock

done = create_workflow("prune-done").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
broken = create_workflow("prune-broken").step("a", lambda ctx: 1 / 0, retries=0)
waiting = create_workflow("prune-wait").step("ask", lambda ctx: Flux.wait("approval"))


def fill(engine: FluxEngine) -> None:
    assert engine.execute_sync(done, {}, id="done-1").status == "completed"
    assert engine.execute_sync(broken, {}, id="broken-1").status == "failed"
    assert engine.execute_sync(waiting, {}, id="wait-1").status == "suspended"
    engine.start_sync(done, {}, id="pending-1")


def ids(engine: FluxEngine) -> set[str]:
    return {r.id for r in engine.list_sync(limit=1000)}


def test_prune_by_default_removes_only_old_finished_runs(tmp_path: Path) -> None:
    clock = VirtualClock(start=dt.datetime.now(dt.timezone.utc))
    with FluxEngine(storage=SQLiteStorage(tmp_path / "f.db"), clock=clock) as engine:
        fill(engine)
        assert engine.prune_sync(older_than=timedelta(days=30)) == 0
        clock.advance_sync(31 * 86400)  # (the engine also runs its pending run meanwhile)
        engine.execute_sync(done, {}, id="done-new")
        engine.start_sync(done, {}, id="pending-new")
        assert engine.prune_sync(older_than=timedelta(days=30)) == 3
        assert ids(engine) == {"wait-1", "done-new", "pending-new"}
        assert engine.prune_sync(older_than=30 * 86400, status="suspended") == 1
        clock.advance_sync(1)
        assert engine.prune_sync(older_than=0, status=["pending", "completed"]) == 2
        assert ids(engine) == set()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"older_than": "30d"}, "older_than='30d'"),
        ({"older_than": -1}, "older_than=-1"),
        ({"older_than": float("nan")}, "older_than=nan"),
        ({"older_than": True}, "older_than=True"),
        ({"older_than": 10**400}, "must be finite"),
        ({"older_than": 1, "status": "done"}, "status='done'"),
        ({"older_than": 1, "status": ["completed", "\x00\ud800"]}, "unknown status"),
        ({"older_than": 1, "status": 7}, "status=7"),
    ],
)
def test_bad_arguments_are_refused_and_remove_nothing(
    tmp_path: Path, kwargs: dict[str, object], words: str
) -> None:
    with FluxEngine(storage=SQLiteStorage(tmp_path / "f.db")) as engine:
        fill(engine)
        with pytest.raises(FluxError) as err:
            engine.prune_sync(**kwargs)  # type: ignore[arg-type]
        assert words in str(err.value)
        assert len(ids(engine)) == 4


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'flux.db'}"
    clock = VirtualClock(
        start=dt.datetime.now(dt.timezone.utc) - timedelta(days=40)
    )  # these runs finished 40 days ago
    with FluxEngine(storage=url, clock=clock) as engine:
        fill(engine)
    return url


def test_cli_prunes_and_prints_the_count(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "prune", "--older-than", "60d", "--storage", url]) == 0
    assert capsys.readouterr().out.strip() == "0"
    assert main(["runs", "prune", "--older-than", "30d", "--status", "completed", "--storage", url]) == 0
    assert capsys.readouterr().out.strip() == "1"
    assert main(["runs", "prune", "--older-than", "30d", "--storage", url]) == 0
    assert capsys.readouterr().out.strip() == "1"
    assert main(["runs", "prune", "--older-than", "1w", "--status", "pending", "--status", "suspended",
                 "--storage", url]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == "2"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--older-than", "30 days"], "--older-than '30 days'"),
        (["--older-than=-3d"], "--older-than '-3d'"),
        (["--older-than", "\x1b[31m"], "--older-than"),
        (["--older-than", "9" * 400 + "d"], "too large"),
        (["--older-than", "3d", "--status", "done"], "invalid choice: 'done'"),
    ],
)
def test_cli_refuses_a_bad_duration_or_status(
    url: str, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    try:
        code = main(["runs", "prune", *argv, "--storage", url])
    except SystemExit as exc:  # argparse's own refusal (exit status 2)
        code = int(str(exc.code))
    assert code != 0
    err = capsys.readouterr().err
    assert words in err and "\x1b" not in err
    with FluxEngine(storage=url) as engine:
        assert len(ids(engine)) == 4


def test_a_storage_without_prune_gets_a_clear_error() -> None:
    from flux import MemoryStorage

    class Old(MemoryStorage):
        prune = None  # type: ignore[assignment]  # a storage written before retention existed

    old: Any = Old()
    with FluxEngine(storage=old) as engine, pytest.raises(FluxError, match="Old has no prune"):
        engine.prune_sync(older_than=1)
