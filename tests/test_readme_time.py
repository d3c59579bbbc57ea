"""The README's "Testing your workflows" example is a test file that passes as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .test_readme import HERE, fenced

ROOT = Path(__file__).resolve().parent.parent


def test_the_virtual_clock_example_passes_under_pytest(tmp_path: Path) -> None:
    test_file = tmp_path / "test_trial.py"
    test_file.write_text(fenced("## Testing your workflows", "python"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio", str(test_file)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": HERE, "PATH": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout


def test_the_durable_time_example_is_valid_python() -> None:
    source = fenced("## Durable time", "python")
    compile(source, "README.md", "exec")
    assert "Flux.sleep(11 * DAY)" in source and ".deadline(15 * DAY)" in source
