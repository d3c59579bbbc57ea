"""The README's "Child workflows" example runs as written and prints what it shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import flux

README = Path(__file__).resolve().parents[2] / "README.md"
HERE = str(Path(flux.__file__).resolve().parent.parent)


def test_the_child_workflows_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("\n## Child workflows\n") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    script = tmp_path / "children.py"
    script.write_text(code[1])
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=60, env={"PYTHONPATH": HERE, "PATH": ""}).stdout  # fmt: skip
    shown = [line.split("#")[1].strip() for line in code[1].splitlines() if "print(" in line]
    assert out.splitlines() == shown
