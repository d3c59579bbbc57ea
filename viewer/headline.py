"""A failed run's headline: what failed, on which attempt, why, and what the saga undid.

Pure: a folded run (``viewer.timeline.fold_run``) in, a ``Headline`` out, or None
for a run that did not fail. The runs list and the run page both show it, so
that "what failed and why" is the first thing read, not something to dig for.
"""

from __future__ import annotations

from dataclasses import dataclass

from .runview import RunView, StepRow
from .summary import ERROR_STATUSES


@dataclass(frozen=True)
class Undo:
    """A compensation that ran: the step whose effect it undid, or failed to."""

    step: str
    ok: bool
    error: str | None = None
    error_type: str | None = None


@dataclass(frozen=True)
class Headline:
    #: The run's status: ``failed``, ``rolled_back``, ``rollback_failed`` or ``cancelled``.
    status: str
    #: The step that failed for good; None when the run failed outside any step.
    step: str | None
    #: The failed step's last attempt, and how many it was allowed (``maxRetries`` + 1).
    attempt: int | None
    attempts: int | None
    error_type: str | None
    error: str | None
    #: Compensations in the order they ran.
    undo: tuple[Undo, ...] = ()

    @property
    def undone(self) -> tuple[str, ...]:
        return tuple(u.step for u in self.undo if u.ok)

    @property
    def not_undone(self) -> tuple[Undo, ...]:
        return tuple(u for u in self.undo if not u.ok)

    @property
    def attempt_text(self) -> str:
        """``attempt 3 of 3``, ``attempt 2``, or empty when unknown."""
        if self.attempt is None:
            return ""
        if self.attempts is None:
            return f"attempt {self.attempt}"
        return f"attempt {self.attempt} of {max(self.attempts, self.attempt)}"

    @property
    def error_text(self) -> str:
        if self.error_type and self.error:
            return f"{self.error_type}: {self.error}"
        return self.error_type or self.error or ""

    @property
    def undo_text(self) -> str:
        """``undone: fetch; failed to undo: hotel (RuntimeError)``, or empty."""
        parts = []
        if self.undone:
            parts.append("undone: " + ", ".join(self.undone))
        for undo in self.not_undone:
            why = undo.error_type or undo.error
            parts.append(f"failed to undo: {undo.step}" + (f" ({why})" if why else ""))
        return "; ".join(parts)

    @property
    def text(self) -> str:
        """One line: ``payment failed (attempt 3 of 3): TimeoutError: gateway; undone: fetch;
        failed to undo: hotel (RuntimeError: no such booking)``."""
        verb = "cancelled" if self.status == "cancelled" else "failed"
        head = f"{self.step} {verb}" if self.step else f"run {verb}"
        if self.attempt_text:
            head += f" ({self.attempt_text})"
        parts = [head + (f": {self.error_text}" if self.error_text else "")]
        if self.undo_text:
            parts.append(self.undo_text)
        return "; ".join(parts)


def headline(view: RunView) -> Headline | None:
    """The headline of ``view``, or None when it did not fail (yet)."""
    if view.status not in ERROR_STATUSES:
        return None
    row = _failed_step(view)
    attempt = attempts = None
    error, error_type = view.error, view.error_type
    if row is not None:
        numbered = [a for a in row.attempts if a.outcome in ("error", "cancelled")]
        last = numbered[-1] if numbered else (row.attempts[-1] if row.attempts else None)
        attempt = last.number if last is not None else None
        attempts = row.max_retries + 1 if row.max_retries is not None and row.max_retries >= 0 else None
        if row.error is not None or row.error_type is not None:
            error, error_type = row.error, row.error_type
    return Headline(
        status=view.status,
        step=row.name if row is not None else None,
        attempt=attempt,
        attempts=attempts,
        error_type=error_type,
        error=error,
        undo=_undo(view.compensations),
    )


def _failed_step(view: RunView) -> StepRow | None:
    # The step whose failure ended the run: the last one that failed for good.
    # A compensation failing later marks the step ``compensation_failed``; its
    # own error event still closed its last attempt as ``error``.
    failed = None
    for row in view.steps:
        if row.group is not None and row.status == "cancelled":  # h/viewbranch: a sibling's doing
            continue
        gave_up = bool(row.attempts) and row.attempts[-1].outcome in ("error", "cancelled")
        if row.status not in ("failed", "cancelled") and not (gave_up and row.error is not None):
            continue
        if failed is None or _ended(row) >= _ended(failed):
            failed = row
    return failed


def _ended(row: StepRow) -> float:
    ends = [a.end for a in row.attempts if a.end is not None]
    return max(ends) if ends else float("-inf")


def _undo(rows: list[StepRow]) -> tuple[Undo, ...]:
    out: list[Undo] = []
    for row in rows:
        if row.status == "compensated":
            out.append(Undo(row.name, True))
        elif row.status == "compensation_failed":
            out.append(Undo(row.name, False, row.error, row.error_type))
    return tuple(out)
