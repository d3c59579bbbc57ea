"""SPEC §5 "Commits and retries": a commit takes no retries from `default_retries`."""

from __future__ import annotations

from typing import Any

from flux import Backoff, FluxEngine, FluxSilentLogger, RunStatus, WorkflowContext, create_workflow


def test_a_commit_that_raises_after_its_effect_is_called_once_despite_default_retries() -> None:
    calls: list[int] = []

    def charge(ctx: WorkflowContext[Any]) -> None:
        calls.append(ctx.attempt)
        raise ConnectionError("the card was charged, then the connection dropped")

    flow = create_workflow("pay").commit("charge", charge)
    with FluxEngine(default_retries=3, default_backoff=Backoff(initial=0.001, jitter=0),
                    logger=FluxSilentLogger()) as engine:  # fmt: skip
        result = engine.execute_sync(flow, {})
    assert result.status is RunStatus.FAILED and calls == [1]


def test_a_commit_that_sets_its_own_retries_is_retried() -> None:
    calls: list[int] = []

    def charge(ctx: WorkflowContext[Any]) -> str:
        calls.append(ctx.attempt)
        if len(calls) < 3:
            raise ConnectionError("flaky")
        return ctx.idempotency_key

    flow = create_workflow("pay").commit("charge", charge, retries=2)
    with FluxEngine(default_backoff=Backoff(initial=0.001, jitter=0), logger=FluxSilentLogger()) as engine:
        result = engine.execute_sync(flow, {}, id="P-1")
    assert result.status is RunStatus.COMPLETED and calls == [1, 2, 3]
    assert result.outputs["charge"] == "P-1:charge"  # the same key on every attempt
