"""`engine.work()` and wake times: an idle worker waits only until the next stored wake time
when that comes before its next poll, and costs a fixed number of storage calls per poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from flux import Flux, FluxEngine, RunStatus, create_workflow

EngineFactory = Callable[..., FluxEngine]


def test_an_idle_worker_makes_two_storage_calls_per_poll(make_engine: EngineFactory) -> None:
    engine = make_engine()
    flow = create_workflow("idle").step("s", lambda ctx: Flux.sleep(3600))
    engine.start_sync(flow, id="later")  # pending: the first loop takes it
    calls: Counter[str] = Counter()
    storage: Any = engine.storage
    for name in ("claim_next", "next_due", "load_run", "list_runs", "save_run", "acquire_lease"):
        original = getattr(storage, name)

        def counted(*args: Any, _o: Any = original, _n: str = name, **kwargs: Any) -> Any:
            calls[_n] += 1
            return _o(*args, **kwargs)

        setattr(storage, name, counted)
    loops = [0]

    def stop() -> bool:
        loops[0] += 1
        return loops[0] > 11  # the run, then ten idle polls

    async def main() -> None:
        await engine.work([flow], stop=stop, poll=0.001)

    asyncio.run(main())
    assert engine.get_sync("later").status is RunStatus.SUSPENDED
    # one loop took the run (one claim; its drive saved it); the ten others were idle
    assert calls["claim_next"] == 11
    assert calls["next_due"] == 10
    assert calls["list_runs"] == 0 and calls["acquire_lease"] == 0


def test_an_idle_worker_wakes_for_a_wake_time_before_its_next_poll(make_engine: EngineFactory) -> None:
    finished: list[asyncio.Event] = []
    engine = make_engine(inline_sleep=0, on={"workflow_complete": lambda ctx: finished[0].set()})
    flow = create_workflow("soon").step("s", lambda ctx: Flux.sleep(0.05)).step("t", lambda ctx: "t")

    async def main() -> None:
        finished.append(asyncio.Event())
        assert (await engine.execute(flow, id="soon")).status is RunStatus.SUSPENDED
        # with a poll of a minute, only the stored wake time can bring the worker back in time
        worker = asyncio.ensure_future(engine.work([flow], poll=60))
        try:
            await asyncio.wait_for(finished[0].wait(), 30)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        assert (await engine.get("soon")).status is RunStatus.COMPLETED

    asyncio.run(main())
