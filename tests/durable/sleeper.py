"""A workflow that sleeps 2 s, for the wake-up crash test; and a process that executes it.

    python sleeper.py DB RUN_ID INLINE_SLEEP

executes the run on the SQLite file DB, prints `sleeping <wakeAt ms>` once its sleep is
stored (in-process when INLINE_SLEEP >= 2, else suspended) and then waits forever, for the
test to SIGKILL it. `flux worker sleeper:flow` in a new process must then wake it: the last
step prints `woke <run id> <time.time()>` on the worker's stdout.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from flux import Flux, FluxEngine, FluxSilentLogger, SQLiteStorage, WorkflowContext, create_workflow


def after(ctx: WorkflowContext[Any]) -> str:
    print(f"woke {ctx.id} {time.time():.6f}", flush=True)
    return "awake"


flow = create_workflow("sleeper").step("nap", lambda ctx: Flux.sleep(2.0)).step("after", after)


class Announce:
    """A trace sink that says when the sleep is stored (the event follows the save)."""

    def emit(self, event: dict[str, Any]) -> None:
        if event["type"] == "step:sleep":
            print(f"sleeping {event['wakeAt']}", flush=True)

    def close(self) -> None:
        return None


if __name__ == "__main__":
    db, run_id, inline = sys.argv[1:]

    async def main() -> None:
        engine = FluxEngine(storage=SQLiteStorage(db), trace=Announce(), inline_sleep=float(inline),
                            logger=FluxSilentLogger())  # fmt: skip
        await engine.execute(flow, id=run_id)  # suspended: returns; in-process: sleeps here
        threading.Event().wait()

    asyncio.run(main())
