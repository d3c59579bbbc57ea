"""The README's front door works as written: the quick start (twice), and its two commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

import flux
from viewer.server import create_app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HERE = str(Path(flux.__file__).resolve().parent.parent)  # the flux these tests import


def fenced(heading: str, language: str) -> str:
    """The first fenced block of `language` under `heading`."""
    text = README.read_text()
    section = text[text.index(f"\n{heading}\n") :]
    return next(m[2] for m in re.finditer(r"```(\w*)\n(.*?)```", section, re.DOTALL) if m[1] == language)


def test_the_quick_start_runs_twice_and_flux_dev_shows_both_runs(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(fenced("## Quick start", "python"))
    expected = fenced("## Quick start", "").splitlines()  # the output the README shows
    for _ in range(2):
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                             check=True, timeout=60, env={"PYTHONPATH": HERE, "PATH": ""}).stdout  # fmt: skip
        assert out.splitlines() == expected
    assert (tmp_path / "data" / "workflows.db").exists()
    with TestClient(create_app(tmp_path / ".flux" / "trace.ndjson"), base_url="http://127.0.0.1") as client:
        page = client.get("/").text
    assert re.findall(r'<tr class="run" data-run-id="([^"]*)"', page) == ["ORD-2", "ORD-1"]


def test_the_test_command_is_the_one_ci_runs() -> None:
    commands = fenced("## The two commands", "bash").splitlines()
    [test_command] = [line for line in commands if "pytest" in line]
    assert "--group dev" in test_command and "'.[all]'" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readme_links_to_files_that_exist() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert "docs/getting-started.md" in local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert missing == []


def test_the_readme_approves_the_demo_run_with_the_command_the_demo_prints() -> None:
    from viewer.demo import approve_command, demo_folder

    # `flux dev --demo` from the checkout's root, with the default --trace
    printed = approve_command(demo_folder(Path("./.flux/trace.ndjson")))
    assert printed in README.read_text().splitlines()  # and tests/examples/test_demo.py runs it
