"""The shared time axis of a run's timeline: timestamps to percentages, round ticks,
and idle time compressed when asked. Pure.

Real time maps linearly. Compressed, every stretch in which nothing ran that is long
next to what did run (a wait for a signal, a sleep, a long back-off, a pause between
executions) is drawn as a short break of fixed width, labelled with its length; the
rest shares the width in proportion to time. A sub-millisecond step and an hour-long
wait are then both readable in one run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

#: Narrowest bar drawn, in percent of the axis: an attempt of 0 ms stays visible.
MIN_WIDTH = 0.4
#: A gap is idle when longer than this share of the time that is not (compressed).
IDLE_SHARE = 0.25
#: Width of one compressed gap, in percent; all of them together take at most MAX_BREAKS.
BREAK_WIDTH = 6.0
MAX_BREAKS = 30.0
#: Most intervals between ticks across the axis.
TICKS = 8


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
    label: str


@dataclass(frozen=True)
class Break:
    """A compressed stretch of idle time: where it is drawn and how long it was."""

    left: float
    width: float
    ms: float
    label: str


@dataclass(frozen=True)
class _Piece:
    t0: float
    t1: float
    x0: float
    x1: float
    idle: bool = False


#: Round steps past ten seconds, where 1/2/5 × 10^n ms would give ticks like "8 min 20 s".
_CLOCK_S = (
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    432000,
    864000,
)
_CLOCK_STEPS = [s * 1000.0 for s in _CLOCK_S]


def nice_step(rough: float) -> float:
    """The round step nearest above ``rough`` (ms): 1, 2 or 5 × 10^n up to 10 s, then the
    clock's own (15 s, 30 s, 1 min, 2, 5, 10, 15, 30 min, 1 h, 2, 3, 6, 12 h, 1 d, 2, 5, 10 d)."""
    if rough <= 0 or not math.isfinite(rough):
        return 1.0
    if rough > 10_000:
        for step in _CLOCK_STEPS:
            if step >= rough:
                return step
        return nice_step(rough / 86_400_000) * 86_400_000 if rough < 1e300 else rough
    exp = math.floor(math.log10(rough))
    base = 10.0**exp
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * base >= rough * 0.999999:
            return m * base
    return 10.0 * base  # pragma: no cover - the loop ends at 10


def offset_label(ms: float) -> str:
    """A tick's offset from the run's start, as round as the tick: ``0``, ``200 ms``,
    ``1.5 s``, ``2 min``, ``1 h 30 min``."""
    if ms <= 0:
        return "0"
    if ms < 1000:
        return f"{ms:g} ms" if ms >= 1 else f"{ms:.2g} ms"
    if ms < 60_000:
        return f"{ms / 1000:g} s"
    if ms < 3_600_000:
        minutes, seconds = divmod(round(ms / 1000), 60)
        return f"{minutes} min" + (f" {seconds} s" if seconds else "")
    if ms < 86_400_000 * 2:
        hours, minutes = divmod(round(ms / 60_000), 60)
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(round(ms / 3_600_000), 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def span_label(ms: float) -> str:
    """A length of time, rounded for a label: ``1 h 2 min``, ``5.3 s``, ``0.04 ms``."""
    if ms < 1:
        return f"{ms:.2g} ms"
    if ms < 10:
        return f"{ms:.1f} ms".replace(".0 ms", " ms")
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g} s"
    return offset_label(ms)


class Axis:
    """Maps epoch-ms timestamps onto 0..100 % between ``start`` and ``end``.

    ``now`` is where open bars end: the wall clock for a live run, or the
    timestamp of the last folded event while replaying. ``busy`` are the
    stretches in which something ran; with ``compress`` the long gaps between
    them become breaks.
    """

    def __init__(
        self,
        start: float | None,
        end: float | None,
        now: float | None,
        busy: Iterable[tuple[float, float]] = (),
        compress: bool = False,
    ) -> None:
        self.start = start if start is not None else 0.0
        end = end if end is not None else self.start
        if now is not None:
            end = max(end, now)
        self.end = end
        self.now = now if now is not None else end
        self.span = max(self.end - self.start, 1.0)
        self.compress = compress
        self.pieces = self._compressed(busy) if compress else None
        if self.pieces is not None and not any(p.idle for p in self.pieces):
            self.pieces = None

    # -- mapping ------------------------------------------------------------------------

    def _compressed(self, busy: Iterable[tuple[float, float]]) -> list[_Piece] | None:
        spans = sorted((max(a, self.start), min(max(a, b), self.end)) for a, b in busy)
        merged: list[list[float]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        # the gaps, between the start, the busy stretches and the end
        edges = [self.start] + [x for ab in merged for x in ab] + [self.end]
        gaps = [(edges[i], edges[i + 1]) for i in range(0, len(edges) - 1, 2)]
        idle: set[int] = set()
        while True:  # a gap is idle when long next to the time kept; keep fewer until stable
            kept = self.span - sum(gaps[i][1] - gaps[i][0] for i in idle)
            more = {
                i for i, (a, b) in enumerate(gaps) if i not in idle and b - a > IDLE_SHARE * max(kept, 1.0)
            }
            if not more:
                break
            idle |= more
        if not idle:
            return None
        kept = max(self.span - sum(gaps[i][1] - gaps[i][0] for i in idle), 1e-9)
        width = min(BREAK_WIDTH, MAX_BREAKS / len(idle))
        scale = (100.0 - width * len(idle)) / kept
        pieces: list[_Piece] = []
        x, t = 0.0, self.start
        for i in sorted(idle):
            a, b = gaps[i]
            if a > t:
                pieces.append(_Piece(t, a, x, x + (a - t) * scale))
                x = pieces[-1].x1
            pieces.append(_Piece(a, b, x, x + width, idle=True))
            x, t = x + width, b
        if self.end > t or not pieces:
            pieces.append(_Piece(t, self.end, x, 100.0))
        last = pieces[-1]
        pieces[-1] = _Piece(last.t0, last.t1, last.x0, 100.0, last.idle)
        return pieces

    def pos(self, ts: float) -> float:
        if self.pieces is None:
            return min(max((ts - self.start) / self.span * 100.0, 0.0), 100.0)
        if ts <= self.start:
            return 0.0
        for p in self.pieces:
            if ts <= p.t1:
                frac = (ts - p.t0) / (p.t1 - p.t0) if p.t1 > p.t0 else 1.0
                return p.x0 + frac * (p.x1 - p.x0)
        return 100.0

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

    # -- what is drawn on the axis ------------------------------------------------------

    def breaks(self) -> list[Break]:
        if self.pieces is None:
            return []
        return [
            Break(round(p.x0, 3), round(p.x1 - p.x0, 3), p.t1 - p.t0, span_label(p.t1 - p.t0))
            for p in self.pieces
            if p.idle
        ]

    def ticks(self, count: int = TICKS) -> list[Tick]:
        """Round offsets from the start (1, 2 or 5 × 10^n); compressed, those that fall
        in the stretches drawn to scale, spaced so that their labels do not collide."""
        if self.pieces is None:
            step = nice_step(self.span / count)
            n = int(self.span // step)
            return [
                Tick(round(self.pos(self.start + k * step), 3), k * step, offset_label(k * step))
                for k in range(n + 1)
            ]
        breaks = self.breaks()
        ticks: list[Tick] = []
        for p in self.pieces:
            if p.idle or p.x1 - p.x0 < 1.0:
                continue
            share = (p.x1 - p.x0) / 100.0
            step = nice_step((p.t1 - p.t0) / max(1.0, count * share))
            # after a break, offsets are counted from the break's end ("+50 ms")
            origin = self.start if p.t0 <= self.start else p.t0
            k = math.ceil((p.t0 - origin) / step - 1e-9) * step
            while origin + k <= p.t1 + 1e-9:
                left = round(self.pos(origin + k), 3)
                clear = all(not (b.left - 7.0 < left < b.left + b.width + 1.0) for b in breaks)
                if clear and (not ticks or left - ticks[-1].left >= 8.0):
                    if origin == self.start:
                        label = offset_label(k)
                    else:
                        label = offset_label(origin - self.start) if k == 0 else "+" + offset_label(k)
                    ticks.append(Tick(left, origin + k - self.start, label))
                k += step
        return ticks
