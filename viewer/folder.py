"""The state of one run's fold (``viewer.timeline``): its rows, their attempts, and
the data snapshots that a step's changes are diffed against."""

from __future__ import annotations

from typing import Any

from . import branches
from .diff import Change, diff
from .lines import number_or_none
from .runview import Attempt, RunView, StepRow


def num(value: Any) -> float | None:
    return number_or_none(value)


def text(value: Any) -> str | None:
    return None if value is None else str(value)


class Folder:
    """A run's view while its events are folded in, with the rows and snapshots behind it."""

    def __init__(self, view: RunView) -> None:
        self.view = view
        self.rows: dict[str, StepRow] = {}
        # ``data`` after each step:complete, by step index, to diff against.
        self.snapshots: list[tuple[int | None, Any]] = []

    def row(self, ev: dict[str, Any]) -> StepRow:
        name = text(ev.get("stepName")) or "?"
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = StepRow(name)
            if not branches.adopt(self, row, ev):
                self.view.steps.append(row)
        if "childId" in ev:
            branches.note_child(row, ev)
        index = ev.get("stepIndex")
        if type(index) is int:
            row.index = index
        if ev.get("commit") is True:
            row.commit = True
        return row

    def define(self, meta: Any) -> None:
        if not isinstance(meta, dict) or not isinstance(meta.get("steps"), list):
            return
        if isinstance(meta.get("version"), str):
            self.view.version = meta["version"]
        known = []
        for i, spec in enumerate(meta["steps"]):
            if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                ev = {"stepName": spec["name"], "stepIndex": i, "commit": spec.get("commit")}
                if "group" in spec:  # a branch, named with its group (SPEC §11)
                    ev["group"] = spec["group"]
                row = self.row(ev)
                if spec.get("kind") in branches.KINDS and row.kind == "step":
                    row.kind = spec["kind"]
                known.append(row)
        # Definition order first; steps the definition does not name keep
        # their order of appearance after it.
        ids = {id(row) for row in known}
        rest = [row for row in self.view.steps if id(row) not in ids]
        self.view.steps = known + rest

    def open_attempt(self, row: StepRow) -> Attempt | None:
        if row.attempts and row.attempts[-1].end is None:
            return row.attempts[-1]
        return None

    def close_attempt(self, row: StepRow, ev: dict[str, Any], ts: float | None, outcome: str) -> Attempt:
        attempt = self.open_attempt(row)
        duration = num(ev.get("duration"))
        if attempt is None:
            # No start event (a trace that begins mid-run): place the bar from
            # its duration.
            number = ev.get("attempt")
            start = ts - duration if ts is not None and duration is not None else ts
            attempt = Attempt(number if type(number) is int else len(row.attempts) + 1, start)
            row.attempts.append(attempt)
        attempt.end = ts if ts is not None else attempt.start
        attempt.outcome = outcome
        attempt.duration = duration
        if outcome in ("retry", "error"):
            attempt.error = text(ev.get("error"))
            attempt.error_type = text(ev.get("errorType"))
        return attempt

    def data_changes(self, index: int | None, data: Any) -> list[Change]:
        before: Any = {}
        for snap_index, snap in reversed(self.snapshots):
            if index is None or snap_index is None or snap_index < index:
                before = snap
                break
        self.snapshots.append((index, data))
        return diff(before, data)
