"""The broadcast hub: changes coalesce per subscriber instead of queueing."""

from __future__ import annotations

import asyncio

from viewer.hub import MAX_PENDING, Hub
from viewer.store import Change


def test_changes_coalesce_until_the_subscriber_looks() -> None:
    async def main() -> None:
        hub = Hub()
        sub = hub.subscribe()
        hub.publish(Change(1, frozenset({"a"})))
        hub.publish(Change(2, frozenset({"b"})))
        pending = await sub.next(timeout=5)
        assert pending.runs == {"a", "b"} and not pending.reset
        assert pending.touches("a") and not pending.touches("c")
        assert not await sub.next(timeout=0)  # nothing new: empty, after the timeout

    asyncio.run(main())


def test_a_reset_touches_every_run_and_many_changes_overflow() -> None:
    async def main() -> None:
        hub = Hub()
        sub = hub.subscribe()
        hub.publish(Change(1, frozenset(), reset=True))
        assert (await sub.next(timeout=5)).touches("anything")
        hub.publish(Change(2, frozenset(str(i) for i in range(MAX_PENDING + 1))))
        pending = await sub.next(timeout=5)
        assert pending.overflow and not pending.runs and pending.touches("x")

    asyncio.run(main())


def test_close_wakes_subscribers_and_unsubscribe_forgets_them() -> None:
    async def main() -> None:
        hub = Hub()
        sub = hub.subscribe()
        waiter = asyncio.create_task(sub.next(timeout=60))
        await asyncio.sleep(0)
        hub.close()
        await asyncio.wait_for(waiter, 5)
        assert sub.closed
        hub.unsubscribe(sub)
        assert len(hub) == 0

    asyncio.run(main())
