"""The shared time axis of a run's timeline: timestamps to percentages."""

from __future__ import annotations

from dataclasses import dataclass

#: Narrowest bar drawn, in percent of the axis: an attempt of 0 ms stays visible.
MIN_WIDTH = 0.4


@dataclass(frozen=True)
class Bar:
    left: float
    width: float
    #: Still going at the axis's "now" (drawn with an open end).
    open: bool = False


@dataclass(frozen=True)
class Tick:
    left: float
    offset_ms: float


class Axis:
    """Maps epoch-ms timestamps onto 0..100 % between ``start`` and ``end``.

    ``now`` is where open bars end: the wall clock for a live run, or the
    timestamp of the last folded event while replaying.
    """

    def __init__(self, start: float | None, end: float | None, now: float | None) -> None:
        self.start = start if start is not None else 0.0
        end = end if end is not None else self.start
        if now is not None:
            end = max(end, now)
        self.end = end
        self.now = now if now is not None else end
        self.span = max(self.end - self.start, 1.0)

    def pos(self, ts: float) -> float:
        return min(max((ts - self.start) / self.span * 100.0, 0.0), 100.0)

    def bar(self, start: float | None, end: float | None) -> Bar:
        is_open = end is None
        begin = self.pos(start if start is not None else self.start)
        finish = self.pos(end if end is not None else max(self.now, start or self.start))
        width = max(finish - begin, MIN_WIDTH)
        if begin + width > 100.0:
            begin = max(100.0 - width, 0.0)
        return Bar(round(begin, 3), round(width, 3), is_open)

    def mark(self, ts: float | None) -> float:
        return round(self.pos(ts if ts is not None else self.start), 3)

    def ticks(self, count: int = 4) -> list[Tick]:
        return [Tick(round(100.0 * i / count, 3), self.span * i / count) for i in range(count + 1)]
