"""A real ``flux dev`` process started with any arguments (``--storage``, ``--demo``), for
the browser tests of the dashboard on stored runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, Server

LAUNCHER = "import sys; from flux.cli import main; sys.exit(main(sys.argv[1:]))"


class DevServer(Server):
    """``flux dev ARGS --port 0`` in ``cwd``, once it answers."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.trace = cwd / ".flux" / "trace.ndjson"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "dev", *args, "--port", "0"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )
        self.printed: list[str] = []
        self.url = self._wait_for_url()
        self._wait_until_it_answers()

    def _wait_for_url(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends when the process does
            self.printed.append(line)
            if "serving http://" in line:
                return line.split("serving ", 1)[1].strip().rstrip("/")
        raise RuntimeError("flux dev exited before serving:\n" + "".join(self.printed))
