"""The README's quick start runs as written, twice (the second time from storage)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start() -> str:
    text = README.read_text()
    start = text.index("## Quick start\n\n```python\n") + len("## Quick start\n\n```python\n")
    return text[start : text.index("```", start)]


def test_the_quick_start_runs(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(quick_start())
    trace = tmp_path / ".flux" / "trace.ndjson"
    for run in range(2):
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                             check=True, timeout=60).stdout  # fmt: skip
        assert out.startswith("completed {'fetch': {'items': 2}, 'payment': 'ch_ORD-1:payment'")
        # the first run writes its events; the second finds the run stored and runs nothing
        assert ('"type":"workflow:complete"' in trace.read_text()) == (run == 0)
    assert (tmp_path / "data" / "workflows.db").exists()
