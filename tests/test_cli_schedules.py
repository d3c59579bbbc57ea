"""`flux schedules list|add|remove` (SPEC §10) against a real SQLite file: what is stored,
the errors (a bad cron field, an unknown timezone, a conflict) with nothing stored, and
stored strings printed inert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flux import FluxEngine, FluxSilentLogger
from flux.cli import main

ROOT = Path(__file__).parents[1]
FLOWS = textwrap.dedent(
    """
    from flux import create_workflow

    report = create_workflow("cli-report").step("build", lambda ctx: ctx.input)
    """
)


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "sched_flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sched_flows", raising=False)
    return f"sqlite:///{tmp_path / 'flux.db'}"


def stored(url: str) -> list[dict[str, object]]:
    with FluxEngine(storage=url, logger=FluxSilentLogger()) as engine:
        return [
            {
                "id": s.id,
                "cron": s.cron,
                "every": s.every,
                "tz": s.timezone,
                "input": s.input,
                "catch_up": s.catch_up,
            }
            for s in engine.schedules_sync()
        ]


def test_add_list_remove(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedules", "list", "--storage", url]) == 1  # no database yet: it is not created
    assert "does not exist" in capsys.readouterr().err
    add = ["schedules", "add", "--storage", url, "--workflow", "sched_flows:report"]
    assert main([*add, "--cron", "0 2 * * *", "--timezone", "Europe/Paris", "--id", "nightly",
                 "--input", '{"kind": "daily"}']) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "nightly" in out and "0 2 * * *" in out and "Europe/Paris" in out
    assert main([*add, "--every", "3600", "--catch-up", "all"]) == 0
    assert stored(url) == [
        {"id": "cli-report", "cron": None, "every": 3600, "tz": "UTC", "input": None, "catch_up": "all"},
        {"id": "nightly", "cron": "0 2 * * *", "every": None, "tz": "Europe/Paris",
         "input": {"kind": "daily"}, "catch_up": "latest"},
    ]  # fmt: skip
    capsys.readouterr()
    assert main(["schedules", "list", "--storage", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "WORKFLOW", "WHEN"]
    assert lines[1].startswith("cli-report") and "every 3600s" in lines[1]
    assert lines[2].startswith("nightly")
    assert main(["schedules", "list", "--storage", url, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["id"] for s in listed] == ["cli-report", "nightly"]
    assert listed[1]["input"] == {"kind": "daily"} and listed[1]["last_slot"] is None
    assert main(["schedules", "remove", "nightly", "--storage", url]) == 0
    assert "removed schedule 'nightly'" in capsys.readouterr().out
    assert main(["schedules", "remove", "nightly", "--storage", url]) == 1
    assert "no schedule with id 'nightly'" in capsys.readouterr().err
    assert [s["id"] for s in stored(url)] == ["cli-report"]


BAD = [
    (
        ["--cron", "61 2 * * *"],
        "schedule 'cli-report': cron '61 2 * * *': minute field '61' out of range 0-59",
    ),
    (["--cron", "0 2 * * FUNDAY"], "day-of-week field 'FUNDAY': 'FUNDAY' is not a number"),
    (
        ["--cron", "0 2 * * *", "--timezone", "Mars/Olympus"],
        "schedule 'cli-report': unknown timezone 'Mars/Olympus'",
    ),
    (["--every", "5m"], "--every '5m': expected a number of seconds"),
    (["--every", "0"], "every=0; must be a whole number of seconds from 1 to"),
    (["--every", "inf"], "every=inf; must be"),
    (["--every", "60", "--input", "{nope"], "--input is not valid JSON"),
    (["--every", "60", "--id", "a\x1b[2Jb"], None),  # fine: stored, printed escaped (below)
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_input_is_a_clear_error_and_stores_nothing(
    url: str, capsys: pytest.CaptureFixture[str], extra: list[str], message: str | None
) -> None:
    code = main(["schedules", "add", "--storage", url, "--workflow", "sched_flows:report", *extra])
    captured = capsys.readouterr()
    if message is None:
        assert code == 0 and "\x1b" not in captured.out and "a\\x1b[2Jb" in captured.out
        return
    assert code == 1
    assert message in captured.err and captured.err.startswith("flux: error: ")
    assert stored(url) == []


def test_a_conflicting_definition_names_both(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    add = ["schedules", "add", "--storage", url, "--workflow", "sched_flows:report", "--id", "job"]
    assert main([*add, "--every", "60"]) == 0
    assert main([*add, "--every", "60"]) == 0  # the same again: nothing changes
    assert main([*add, "--every", "120"]) == 1
    err = capsys.readouterr().err
    assert "schedule 'job' exists with another definition" in err
    assert "stored workflow 'cli-report', every=60" in err and "given workflow 'cli-report', every=120" in err
    assert [s["every"] for s in stored(url)] == [60]


def test_as_a_process(url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    argv = [sys.executable, "-m", "flux.cli", "schedules", "add", "--storage", url,
            "--workflow", "sched_flows:report", "--cron", "0 25 * * *"]  # fmt: skip
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "flux: error: schedule 'cli-report': cron '0 25 * * *': hour field '25' out of range 0-23"
    )
