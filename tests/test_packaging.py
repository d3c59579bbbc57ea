"""The project's own configuration: the test command works beside common plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flux

ROOT = Path(__file__).resolve().parent.parent


def test_the_tests_run_with_pytest_asyncio_installed() -> None:
    pytest.importorskip("pytest_asyncio", reason="the test dependency group installs pytest-asyncio")
    env = {**os.environ, "PYTHONPATH": str(Path(flux.__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cli.py::test_version"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "INTERNALERROR" not in done.stdout + done.stderr
    assert "1 passed" in done.stdout
