"""`flux runs ...` against a real SQLite file, with a workflow imported by module:attribute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flux.cli import main

FLOWS = textwrap.dedent(
    """
    import os

    from flux import Flux, create_workflow

    CALLS = []

    def ask(ctx):
        return Flux.wait("approval")

    def flaky(ctx):
        CALLS.append(ctx.step_name)
        if os.path.exists("service-down"):
            raise RuntimeError("service down")
        return "ok"

    approval = create_workflow("cli-approval").step("ask", ask).step("after", lambda ctx: ctx.outputs["ask"])
    failing = create_workflow("cli-failing").step("one", lambda ctx: 1).step("two", flaky, retries=0)
    not_a_flow = 42
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cli_flows.py").write_text(FLOWS)
    (tmp_path / "service-down").touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cli_flows", raising=False)
    url = f"sqlite:///{tmp_path / 'flux.db'}"
    import cli_flows  # type: ignore[import-not-found]

    from flux import FluxEngine

    engine = FluxEngine(storage=url)
    assert engine.execute_sync(cli_flows.approval, {}, id="ap-1").status == "suspended"
    assert engine.execute_sync(cli_flows.failing, {"fail": True}, id="f-1").status == "failed"
    engine.close_sync()
    return url


def test_list_shows_runs_newest_first(project: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--storage", project]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "STATUS", "CREATED", "STEPS", "ERROR"]
    assert lines[1].split()[:3] == ["f-1", "cli-failing", "failed"]
    assert "service down" in lines[1]
    assert lines[2].split()[:3] == ["ap-1", "cli-approval", "suspended"]


def test_list_filters_and_json(project: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--storage", project, "--status", "suspended", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["status"], r["waiting_for"]) for r in rows] == [("ap-1", "suspended", "approval")]


def test_show_one_run(project: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "f-1", "--storage", project, "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["error_type"] == "RuntimeError" and detail["failed_step"] == "two"
    assert [h["status"] for h in detail["history"]] == ["completed", "failed"]


def test_signal_continues_the_run(project: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "runs",
            "signal",
            "ap-1",
            "approval",
            "--payload",
            '{"by": "ann"}',
            "--workflow",
            "cli_flows:approval",
            "--storage",
            project,
        ]
    )
    assert code == 0
    assert "status completed" in capsys.readouterr().out


def test_retry_reruns_the_failed_step(
    project: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import cli_flows

    (tmp_path / "service-down").unlink()  # the service is back
    cli_flows.CALLS.clear()
    code = main(["runs", "retry", "f-1", "two", "--workflow", "cli_flows:failing", "--storage", project])
    assert code == 0
    assert "status completed" in capsys.readouterr().out
    assert cli_flows.CALLS == ["two"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "show", "nope"], "no run with id 'nope'"),
        (["runs", "signal", "f-1", "approval", "--workflow", "cli_flows:failing"], "not suspended"),
        (["runs", "signal", "ap-1", "wrong", "--workflow", "cli_flows:approval"], "waits for 'approval'"),
        (
            ["runs", "signal", "ap-1", "approval", "--payload", "{bad", "--workflow", "cli_flows:approval"],
            "--payload is not valid JSON",
        ),
        (
            [
                "runs",
                "signal",
                "ap-1",
                "approval",
                "--payload",
                "9" * 5000,
                "--workflow",
                "cli_flows:approval",
            ],
            "--payload is not valid JSON",
        ),
        (
            ["runs", "retry", "f-1", "two", "--workflow", "missing_module:flow"],
            "cannot import missing_module",
        ),
        (["runs", "retry", "f-1", "two", "--workflow", "cli_flows:nothing"], "has no attribute 'nothing'"),
        (["runs", "retry", "f-1", "two", "--workflow", "cli_flows:not_a_flow"], "not a workflow"),
        (["runs", "retry", "f-1", "two", "--workflow", "cli_flows"], "expected module:attribute"),
        (["runs", "retry", "f-1", "zzz", "--workflow", "cli_flows:failing"], "has no step 'zzz'"),
    ],
)
def test_mistakes_are_clear_errors(
    project: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([*argv, "--storage", project]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flux: error:") and message in err


def test_missing_database_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["runs", "list", "--storage", url]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


def test_no_storage_given(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUX_STORAGE", raising=False)
    assert main(["runs", "list"]) == 1
    assert "no storage" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import flux

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"flux {flux.__version__} (gravito-flux)"


@pytest.mark.parametrize(("argv", "usage"), [([], "usage: flux "), (["runs"], "usage: flux runs ")])
def test_a_command_without_its_action_prints_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str
) -> None:
    assert main(argv) == 0
    out = capsys.readouterr()
    assert out.out.startswith(usage) and "show" in out.out and out.err == ""


def test_retry_that_fails_again_exits_non_zero(project: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["runs", "retry", "f-1", "two", "--workflow", "cli_flows:failing", "--storage", project])
    assert code == 1
    out = capsys.readouterr()
    assert "status failed" in out.out
    message = "flux: error: run f-1 (cli-failing): step 'two' failed again: RuntimeError: service down\n"
    assert out.err == message


def test_show_prints_times_outputs_and_errors(project: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "f-1", "--storage", project]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("created 20") and "Z  finished 20" in out[1] and "took " in out[1]
    one = out.index(next(line for line in out if line.strip().startswith("one ")))
    assert "started 20" in out[one] and "Z  took 0." in out[one]
    assert out[one + 1].strip() == "output: 1"
    two = out[one + 2]
    assert two.split()[:3] == ["two", "step", "failed"] and "took " in two
    assert out[one + 3].strip() == "error:  RuntimeError: service down"


def test_created_column_is_utc_and_says_so(project: str, capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt

    assert main(["runs", "list", "--storage", project]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    day, clock = row[3], row[4]
    assert clock.endswith("Z")
    stamp = dt.datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 3600


def test_a_module_whose_import_fails_is_named(
    project: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "script_flows.py").write_text(
        "from flux import create_workflow\n"
        "flow = create_workflow('script').step('one', lambda ctx: 1)\n"
        "raise RuntimeError('the script ran at import')\n"
    )
    code = main(["runs", "retry", "f-1", "two", "--workflow", "script_flows:flow", "--storage", project])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "flux: error: --workflow 'script_flows:flow': importing script_flows raised RuntimeError: "
        "the script ran at import"
    )
    assert 'if __name__ == "__main__":' in err


def test_postgres_without_psycopg_says_what_to_install(tmp_path: Path) -> None:
    import subprocess

    # a real process in which `import psycopg` fails, as it does where the extra is not installed
    code = "import sys; sys.modules['psycopg'] = None\nimport flux.cli; sys.exit(flux.cli.main(sys.argv[1:]))"
    argv = ["runs", "list", "--storage", "postgresql://nobody@127.0.0.1:1/none"]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("flux: error: --storage postgresql://...: ")
    assert "pip install 'gravito-flux[postgres]'" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ stored strings printed safely

#: Clears the screen and retitles the terminal if printed as it is; then a C1 CSI and a
#: right-to-left override.
EVIL = "\x1b[2J\x1b]0;pwn\x07\x9b31m\u202e"
ROOT = Path(__file__).resolve().parent.parent


def _evil_run(tmp_path: Path) -> tuple[str, str]:
    from flux import FluxEngine, FluxSilentLogger, WorkflowContext, create_workflow

    def first(ctx: WorkflowContext[Any]) -> Any:
        ctx.data["note"] = EVIL
        return {"said": EVIL}

    def bad(ctx: WorkflowContext[Any]) -> None:
        raise RuntimeError(f"boom {EVIL}")

    url = f"sqlite:///{tmp_path / 'evil.db'}"
    flow = create_workflow("evil").step("first", first).step("bad", bad, retries=0)
    with FluxEngine(storage=url, logger=FluxSilentLogger()) as engine:
        result = engine.execute_sync(flow, {"who": EVIL}, id=f"run-{EVIL}")
    assert result.status == "failed" and result.error is not None and EVIL in result.error
    return url, f"run-{EVIL}"


def _flux(*argv: str, cwd: Path) -> tuple[bytes, bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "flux.cli", *argv], cwd=cwd, env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


def _assert_inert(out: bytes) -> None:
    for byte in (b"\x1b", b"\x07", "\x9b".encode(), "\u202e".encode()):
        assert byte not in out, (byte, out)


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["table", "json"])
def test_runs_list_prints_no_terminal_escape_from_a_stored_run(tmp_path: Path, json_flag: list[str]) -> None:
    url, _ = _evil_run(tmp_path)
    out, err = _flux("runs", "list", "--storage", url, *json_flag, cwd=tmp_path)
    _assert_inert(out + err)
    assert b"run-" in out and b"evil" in out
    if json_flag:  # still valid JSON, and the same strings once decoded
        row = json.loads(out)
        assert row["id"] == f"run-{EVIL}" and EVIL in row["error"]
    else:
        assert b"\\x1b[2J" in out


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_runs_show_prints_no_terminal_escape_from_a_stored_run(tmp_path: Path, json_flag: list[str]) -> None:
    url, run_id = _evil_run(tmp_path)
    out, err = _flux("runs", "show", run_id, "--storage", url, *json_flag, cwd=tmp_path)
    _assert_inert(out + err)
    if json_flag:
        detail = json.loads(out)
        assert detail["id"] == run_id and detail["data"] == {"note": EVIL}
        assert detail["history"][0]["output"] == {"said": EVIL}
    else:
        text = out.decode()
        assert "\\x1b]0;pwn\\x07" in text and "\\u202e" in text
        assert text.count("\\x1b[2J") >= 3  # id, error, data at least


def test_show_prints_the_wake_time_and_deadline_of_a_sleeping_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flux import Flux, FluxEngine, create_workflow

    url = f"sqlite:///{tmp_path / 'flux.db'}"
    flow = create_workflow("cli-sleeper").deadline(7200).step("nap", lambda ctx: Flux.sleep(3600))
    engine = FluxEngine(storage=url)
    result = engine.execute_sync(flow, {}, id="nap-1")
    engine.close_sync()
    assert result.status == "suspended" and result.wake_at is not None and result.deadline is not None
    assert main(["runs", "show", "nap-1", "--storage", url, "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["wake_at"] == result.wake_at.isoformat()
    assert detail["deadline"] == result.deadline.isoformat()
    assert main(["runs", "show", "nap-1", "--storage", url]) == 0
    text = capsys.readouterr().out
    assert f"wakes {result.wake_at:%Y-%m-%d %H:%M:%S}Z" in text
    assert f"deadline {result.deadline:%Y-%m-%d %H:%M:%S}Z" in text
