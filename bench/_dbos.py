"""DBOS, the baseline of bench/durable.py and bench/workers.py: the same 10 trivial steps."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

STEPS = 10


def setup_dbos(system_database_url: str) -> Callable[[int], float]:
    """Launch DBOS on that system database; return `run(n)`: µs per step over n workflows."""
    try:
        from dbos import DBOS
    except ImportError:
        sys.exit("DBOS is not installed: pip install -e '.[bench]'")
    DBOS(config={"name": "flux-bench", "system_database_url": system_database_url,
                 "log_level": "ERROR", "console_log_level": "ERROR"})  # fmt: skip

    @DBOS.step()
    def dbos_step(i: int) -> int:
        return i

    @DBOS.workflow()
    def dbos_workflow() -> int:
        return sum(dbos_step(i) for i in range(STEPS))

    DBOS.launch()

    def run(runs: int) -> float:
        start = time.perf_counter()
        for _ in range(runs):
            dbos_workflow()
        return (time.perf_counter() - start) / (runs * STEPS) * 1e6

    return run


def destroy_dbos() -> None:
    from dbos import DBOS

    DBOS.destroy()
