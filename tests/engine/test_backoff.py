"""flux.backoff: the delay between attempts, and that the engine waits it."""

from __future__ import annotations

import random
from typing import Any

import pytest

from flux import Backoff, FluxEngine, WorkflowContext, create_workflow
from flux.backoff import DEFAULT_BACKOFF


def test_delay_grows_by_factor_from_initial_and_is_capped_at_max() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, max=30.0, jitter=0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_factor_one_gives_a_constant_delay() -> None:
    backoff = Backoff(initial=0.25, factor=1, max=10, jitter=0)
    assert {backoff.delay(n) for n in range(1, 6)} == {0.25}


def test_zero_initial_never_waits() -> None:
    assert Backoff(initial=0, jitter=0.5).delay(5) == 0


def test_max_caps_even_the_first_delay() -> None:
    assert Backoff(initial=5, max=2, jitter=0).delay(1) == 2


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 10.0), (0.5, 7.5), (0.999999, 5.0000025)])
def test_jitter_removes_up_to_its_fraction_of_the_delay(
    monkeypatch: pytest.MonkeyPatch, draw: float, expected: float
) -> None:
    monkeypatch.setattr(random, "random", lambda: draw)
    assert Backoff(initial=10, factor=2, max=60, jitter=0.5).delay(1) == pytest.approx(expected)


def test_jittered_delays_stay_within_bounds_and_vary() -> None:
    backoff = Backoff(initial=8, factor=2, max=100, jitter=0.25)
    delays = [backoff.delay(2) for _ in range(200)]
    assert all(12.0 <= d <= 16.0 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize("retry", [1_100, 10**6, 10**9])
@pytest.mark.parametrize(
    "backoff",
    [DEFAULT_BACKOFF, Backoff(initial=0.5, factor=1.5, max=120.0, jitter=0.3), Backoff(jitter=0)],
    ids=["default", "factor-1.5", "no-jitter"],
)
def test_a_late_retry_waits_the_cap_and_never_overflows(backoff: Backoff, retry: int) -> None:
    # The cap is applied before the power is computed: factor ** 1_099 is past a float.
    delays = [backoff.delay(retry) for _ in range(50)]
    assert all(backoff.max * (1 - backoff.jitter) <= d <= backoff.max for d in delays)


def test_an_integer_factor_is_capped_before_it_becomes_a_huge_integer() -> None:
    assert Backoff(initial=1.0, factor=2, max=30, jitter=0).delay(1_100) == 30


def test_zero_initial_never_waits_even_late() -> None:
    assert Backoff(initial=0, jitter=0).delay(10**9) == 0


def test_the_default_is_one_second_doubling_to_thirty_with_jitter() -> None:
    assert (DEFAULT_BACKOFF.initial, DEFAULT_BACKOFF.factor, DEFAULT_BACKOFF.max) == (1.0, 2.0, 30.0)
    assert 0 < DEFAULT_BACKOFF.jitter <= 1


class RecordingBackoff(Backoff):
    """Waits nothing, but remembers which retry numbers the engine asked about."""

    asked: list[int]

    def delay(self, retry: int) -> float:
        self.asked.append(retry)
        return 0.0


def _recording() -> RecordingBackoff:
    backoff = RecordingBackoff(initial=0, jitter=0)
    object.__setattr__(backoff, "asked", [])
    return backoff


def _always_fails(ctx: WorkflowContext[Any]) -> None:
    raise ValueError("down")


def test_the_engine_waits_the_step_backoff_before_each_retry(memory_engine: FluxEngine) -> None:
    backoff = _recording()
    flow = create_workflow("w").step("a", _always_fails, retries=3, backoff=backoff)
    assert memory_engine.execute_sync(flow).status == "failed"
    assert backoff.asked == [1, 2, 3]


def test_the_engine_default_backoff_applies_when_the_step_has_none() -> None:
    backoff = _recording()
    with FluxEngine(default_backoff=backoff, default_retries=2) as engine:
        engine.execute_sync(create_workflow("w").step("a", _always_fails))
    assert backoff.asked == [1, 2]


def test_a_step_backoff_overrides_the_engine_default() -> None:
    engine_backoff, step_backoff = _recording(), _recording()
    with FluxEngine(default_backoff=engine_backoff) as engine:
        engine.execute_sync(create_workflow("w").step("a", _always_fails, retries=1, backoff=step_backoff))
    assert (engine_backoff.asked, step_backoff.asked) == ([], [1])
