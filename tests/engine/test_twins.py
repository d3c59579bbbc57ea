"""Every coroutine method of the engine has a `_sync` twin of the same signature, made by
one mechanism (`flux.twins.twin`)."""

from __future__ import annotations

import inspect

import pytest

from flux import FluxEngine, FluxError, create_workflow
from flux.twins import twin

PUBLIC_ASYNC = sorted(
    name
    for name, fn in vars(FluxEngine).items()
    if inspect.iscoroutinefunction(fn) and not name.startswith("_")
)


def test_the_engine_has_the_coroutine_methods_of_the_spec() -> None:
    for name in ("execute", "resume", "signal", "retry_step", "cancel", "recover", "get", "list", "close"):
        assert name in PUBLIC_ASYNC


@pytest.mark.parametrize("name", PUBLIC_ASYNC)
def test_every_coroutine_method_has_a_twin_of_the_same_signature(name: str) -> None:
    assert f"{name}_sync" in vars(FluxEngine), f"FluxEngine.{name} has no {name}_sync twin"
    engine = FluxEngine()
    try:
        method = getattr(FluxEngine, name)
        sync = getattr(engine, f"{name}_sync")
        assert inspect.signature(sync) == inspect.signature(getattr(engine, name))
        if name != "close":
            assert isinstance(vars(FluxEngine)[f"{name}_sync"], twin)
            assert vars(FluxEngine)[f"{name}_sync"].method is method
    finally:
        engine.close_sync()


def test_a_twin_refuses_to_run_inside_an_event_loop() -> None:
    import asyncio

    engine = FluxEngine()
    flow = create_workflow("w").step("a", lambda ctx: 1)

    async def inside() -> None:
        with pytest.raises(FluxError, match=r"execute_sync\(\) was called inside a running event loop"):
            engine.execute_sync(flow)

    asyncio.run(inside())
    engine.close_sync()
