"""Compact columns: a large JSON text stored as its difference from a base text.

What a run keeps so that `retry_step` can restore earlier data is, per step, `ctx.data` as
it was before the step (`data_before`), and on SQLite's fast path also the data after it
(`run_data`). Stored whole, that is the data times the steps. Stored here as the change
from a base the reader already has, it costs what the steps changed:

- a step's `data_before` against the previous step's `data_before` (the previous step's
  data before it plus what it changed), when that step is finished, so its row is stored
  and stays as it is until a restart resets both rows;
- SQLite's `run_data` against the `data_before` of its own row.

The form is `~<prefix>,<suffix>,<middle>`: the first `prefix` characters of the base, then
`middle`, then the last `suffix` characters of the base. A stored `data_before` is JSON of
a dict, so it starts with `{`: rows written before this form (Flux 0.1.0) load unchanged.
Texts shorter than `MIN_SIZE` are stored whole (the difference would save little).
"""

from __future__ import annotations

from ..errors import StorageError
from ..records import StepRecord
from ..status import StepStatus

MIN_SIZE = 2048
MARK = "~"
#: States in which a step's stored row holds its `data_before` and keeps it: it started,
#: finished, and only a restart from it or before it (which resets the later rows too)
#: changes it.
_SETTLED = frozenset(
    {StepStatus.COMPLETED, StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED}
)


def _prefix(a: str, b: str) -> int:
    """Length of the common prefix, by halving (each comparison runs in C)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _suffix(a: str, b: str, limit: int) -> int:
    """Length of the common suffix, at most `limit`."""
    la, lb = len(a), len(b)
    if a[la - limit :] == b[lb - limit :]:
        return limit
    lo, hi = 0, limit  # the last lo characters agree, the last hi do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
            lo = mid
        else:
            hi = mid
    return lo


def against(text: str | None, base: str | None) -> str | None:
    """`text` as stored: whole, or its difference from `base` when that is much shorter."""
    if text is None or base is None or len(text) < MIN_SIZE:
        return text
    if text is base or text == base:
        return f"{MARK}{len(base)},0,"
    head = _prefix(text, base)
    tail = _suffix(text, base, min(len(text), len(base)) - head)
    middle = text[head : len(text) - tail]
    if len(middle) > len(text) // 2:
        return text
    return f"{MARK}{head},{tail},{middle}"


def decode(stored: str | None, base: str | None) -> str | None:
    """The text `against` stored, given the same base."""
    if stored is None or not stored.startswith(MARK):
        return stored
    if base is None:
        raise StorageError(
            "a compact data column has no base row to be read against (the row before it is missing)"
        )
    head_text, tail_text, middle = stored[1:].split(",", 2)
    head, tail = int(head_text), int(tail_text)
    return base[:head] + middle + base[len(base) - tail :]


def before_base(prev: StepRecord | None) -> str | None:
    """The base of a step's `data_before`: the previous step's, once that step is settled."""
    if prev is None or prev.status not in _SETTLED:
        return None
    return prev.data_before
