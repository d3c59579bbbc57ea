"""`flux dev --demo` runs on a SQLite file of its own: the suspended demo run, approved by the
command the demo prints (the README's, as written), completes on the open page."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from viewer.demo import examples_dir

from .conftest import ROOT
from .stored_server import DevServer


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DevServer]:
    (tmp_path / "examples").symlink_to(examples_dir())  # as from the checkout's root
    srv = DevServer(["--demo"], tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def test_the_demo_run_is_approved_by_the_printed_command_and_the_page_follows(
    demo: DevServer, tmp_path: Path, page: Any
) -> None:
    printed = [line.rstrip("\n") for line in demo.printed]
    command = printed[printed.index("  EXP-3-demo waits for its approval; approve it with:") + 1].strip()
    assert "--storage sqlite:///.flux/demo/workflows.db" in command  # the demo's own file
    page.goto(demo.url + "/")
    page.wait_for_selector('tr.run[data-run-id="EXP-3-demo"][data-status="suspended"]')
    page.goto(demo.url + "/runs/EXP-3-demo")
    page.wait_for_selector('#stored-status[data-status="suspended"]')
    page.wait_for_selector("#timeline")  # joined with the demo's trace
    page.wait_for_selector("#live.on")
    page.evaluate("window.__notReloaded = 'yes'")
    done = subprocess.run(
        [sys.executable, "-m", "flux.cli", *shlex.split(command)[1:]],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    page.wait_for_selector('#stored-status[data-status="completed"]')
    assert page.evaluate("window.__notReloaded") == "yes"
    assert not (tmp_path / "data").exists()  # nothing of the user's was made or touched
