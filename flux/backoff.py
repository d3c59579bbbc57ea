"""How long to wait between the attempts of a step."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .errors import WorkflowDefinitionError


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: `initial` seconds, times `factor` per retry, capped at `max`.

    `jitter` is the fraction of each delay that is randomised (0 disables it), so that
    many runs failing together do not retry in lockstep.
    """

    initial: float = 1.0
    factor: float = 2.0
    max: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for field in ("initial", "factor", "max", "jitter"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise WorkflowDefinitionError(f"Backoff({field}={value!r}): must be a number >= 0")
        if self.jitter > 1:
            raise WorkflowDefinitionError(f"Backoff(jitter={self.jitter!r}): must be <= 1")
        if self.factor < 1:
            raise WorkflowDefinitionError(f"Backoff(factor={self.factor!r}): must be >= 1")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        base = self._capped(retry - 1)
        if self.jitter:
            base -= base * self.jitter * random.random()
        return base

    def _capped(self, grown: int) -> float:
        """`initial * factor ** grown`, capped at `max` before the power is computed, so
        that a late retry (number 1,100, or 10**9) neither overflows a float nor builds
        a huge integer."""
        initial, factor, cap = float(self.initial), float(self.factor), float(self.max)
        if initial == 0 or initial >= cap:
            return min(initial, cap)
        if factor == 1 or grown <= 0:
            return min(cap, initial * factor**grown)
        # Past log_factor(max / initial) growths the cap is reached: no power needed.
        if grown >= (math.log(cap) - math.log(initial)) / math.log(factor):
            return cap
        try:
            return min(cap, initial * factor**grown)
        except OverflowError:  # rounding at the edge of the float range
            return cap


DEFAULT_BACKOFF = Backoff()
