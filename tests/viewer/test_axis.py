"""The run page's time axis (viewer/axis.py): round ticks, and idle time compressed."""

from __future__ import annotations

import pytest

from viewer.axis import Axis, nice_step, offset_label


@pytest.mark.parametrize(
    ("rough", "step"),
    [(0.3, 0.5), (1, 1), (1.2, 2), (3, 5), (7, 10), (180, 200), (662, 1000), (4_000, 5_000),
     (12_000, 15_000), (50_000, 60_000), (450_000, 600_000), (3_000_000, 3_600_000)],
)  # fmt: skip
def test_steps_are_round(rough: float, step: float) -> None:
    assert nice_step(rough) == step


def test_ticks_are_round_offsets_from_the_start() -> None:
    labels = [t.label for t in Axis(1000.0, 6300.0, 6300.0).ticks()]
    assert labels == ["0", "1 s", "2 s", "3 s", "4 s", "5 s"]
    assert [t.label for t in Axis(0.0, 3_600_000.0, 3_600_000.0).ticks()][-1] == "1 h"


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0"), (200, "200 ms"), (1500, "1.5 s"), (120_000, "2 min"), (5_400_000, "1 h 30 min")],
)
def test_offsets_read_as_round_as_they_are(ms: float, text: str) -> None:
    assert offset_label(ms) == text


def test_real_time_is_linear() -> None:
    axis = Axis(0.0, 1000.0, 1000.0)
    assert [axis.pos(t) for t in (0, 250, 1000)] == [0.0, 25.0, 100.0]
    assert axis.breaks() == []


def test_compressing_shrinks_the_long_idle_gap_and_keeps_the_rest_to_scale() -> None:
    hour = 3_600_000.0
    busy = [(0.0, 80.0), (hour + 80, hour + 180)]
    axis = Axis(0.0, hour + 180, hour + 180, busy=busy, compress=True)
    (gap,) = axis.breaks()
    assert gap.ms == hour and gap.label == "1 h"
    a, b = axis.bar(0.0, 80.0), axis.bar(hour + 80, hour + 180)
    assert a.width > 30 and b.width > 30
    assert a.width / b.width == pytest.approx(0.8, rel=0.01)  # to scale with each other
    assert axis.pos(hour / 2) > axis.pos(80.0) and axis.pos(hour / 2) < axis.pos(hour + 80)  # monotonic


def test_nothing_to_compress_leaves_the_axis_linear() -> None:
    axis = Axis(0.0, 100.0, 100.0, busy=[(0.0, 40.0), (45.0, 100.0)], compress=True)
    assert axis.pieces is None and axis.pos(50.0) == 50.0
