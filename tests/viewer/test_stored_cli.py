"""`flux dev --storage` on the command line: traces (several, a glob), --workflows,
--stuck-after, and the mistakes refused with a message before anything is served."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from flux.cli import CLIError, _duration, _traces, load_workflows, main


def test_traces_several_or_a_glob_with_storage(tmp_path: Path) -> None:
    for name in ("b.ndjson", "a.ndjson", "c.txt"):
        (tmp_path / name).write_text("")
    pattern = str(tmp_path / "*.ndjson")
    assert _traces([pattern], "sqlite:///x.db") == [tmp_path / "a.ndjson", tmp_path / "b.ndjson"]
    one, two = str(tmp_path / "a.ndjson"), str(tmp_path / "new.ndjson")  # need not exist yet
    assert _traces([one, two, one], "sqlite:///x.db") == [Path(one), Path(two)]
    with pytest.raises(CLIError, match="matches no file"):
        _traces([str(tmp_path / "*.nothing")], "sqlite:///x.db")
    with pytest.raises(CLIError, match="need --storage"):
        _traces([one, two], None)
    assert _traces([one], None) == [Path(one)]


def test_no_trace_with_storage_is_the_default_one_if_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _traces(None, "sqlite:///x.db") == []
    assert _traces(None, None) == [Path("./.flux/trace.ndjson")]
    (tmp_path / ".flux").mkdir()
    (tmp_path / ".flux" / "trace.ndjson").write_text("")
    assert _traces(None, "sqlite:///x.db") == [Path("./.flux/trace.ndjson")]


def test_workflows_from_modules_and_attributes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myflows.py").write_text(
        "from flux import create_workflow\n"
        "a = create_workflow('alpha').step('s', lambda ctx: 1)\n"
        "b = create_workflow('beta').step('s', lambda ctx: 2)\n"
        "not_a_flow = 3\n"
    )
    (tmp_path / "empty_mod.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        flows = load_workflows(["myflows"])
        assert sorted(flows) == ["alpha", "beta"] and flows["alpha"].name == "alpha"
        assert sorted(load_workflows(["myflows:a, myflows:b", ""])) == ["alpha", "beta"]
        with pytest.raises(CLIError, match="defines no workflow"):
            load_workflows(["empty_mod"])
        with pytest.raises(CLIError, match="cannot import"):
            load_workflows(["no_such_module_here"])
    finally:
        for name in ("myflows", "empty_mod"):
            sys.modules.pop(name, None)


def test_stuck_after_reads_spans() -> None:
    assert _duration("2h") == 7200 and _duration("90") == 90 and _duration("1d") == 86400
    for bad in ("soon", "0", "-1h", "1e999d"):
        with pytest.raises(argparse.ArgumentTypeError, match="time span"):
            _duration(bad)


def test_mistakes_are_refused_before_serving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "--read-only", "--port", "0"]) == 1
    assert "pass --storage" in capsys.readouterr().err
    missing = tmp_path / "missing.db"
    assert main(["dev", "--storage", f"sqlite:///{missing}", "--port", "0"]) == 1
    assert not missing.exists()  # never made by the dashboard
    with pytest.raises(SystemExit):
        main(["dev", "--storage", "memory://", "--stuck-after", "whenever"])
