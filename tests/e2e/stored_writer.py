"""Another process changing stored runs, for the `flux dev --storage` browser tests.

    python -m tests.e2e.stored_writer URL MODE RUN_ID

- `execute`: run the workflow "quick" as RUN_ID to completion; prints `done`.
- `wait`: run "approve" as RUN_ID, which suspends waiting for the signal "approval".
- `signal`: send "approval" to RUN_ID (it completes); prints `done`.
- `hold`: run "hold" as RUN_ID with a long lease; its step prints `blocked` and then blocks
  until the process is killed (the test SIGKILLs it). It blocks only where FLUX_HOLD=1 (this
  process): run again elsewhere (the dashboard's recover), the step just completes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

from flux import Flux, FluxEngine, FluxSilentLogger, create_workflow


def _block(ctx: Any) -> str:
    if os.environ.get("FLUX_HOLD") != "1":
        return "went on"
    print("blocked", flush=True)
    threading.Event().wait()  # until SIGKILL
    return "never"


quick = create_workflow("quick").step("one", lambda ctx: 1).step("two", lambda ctx: 2)
approve = create_workflow("approve").step("approval", lambda ctx: Flux.wait("approval"))
hold = create_workflow("hold").step("block", _block)


async def main(url: str, mode: str, run_id: str) -> None:
    engine = FluxEngine(storage=url, logger=FluxSilentLogger(), lease_seconds=600.0)
    try:
        if mode == "execute":
            await engine.execute(quick, {"n": 1}, id=run_id)
        elif mode == "wait":
            await engine.execute(approve, {}, id=run_id)
        elif mode == "signal":
            await engine.signal(approve, run_id, "approval", {"ok": True})
        elif mode == "hold":
            await engine.execute(hold, {}, id=run_id)
        print("done", flush=True)
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
