"""The parts of a run's fold (``viewer.timeline``) that concern branches (SPEC §11): a
parallel group's branches as rows of their own under the group's row, a map's items
kept apart (one row for the map, the items opened from it), a call's child run. Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .runview import Attempt, MapItems, RunView, StepRow

if TYPE_CHECKING:
    from .folder import Folder

#: The ``errorType`` of a branch stopped because a sibling failed for good. It names a
#: type the engine raises inside the branch, not one users catch.
BRANCH_CANCELLED = "BranchCancelledError"
#: What ``meta.steps`` may say a step is, besides a step; the kinds whose members run inside.
KINDS = frozenset({"parallel", "map", "call"})
GROUPS = frozenset({"parallel", "map"})


def adopt(f: Folder, row: StepRow, ev: dict[str, Any]) -> bool:
    """Place a new ``row`` whose event names a ``group``; False when it names none (or
    itself): then it is a step of the workflow's own."""
    group = ev.get("group")
    if type(group) is not str or group == row.name:
        return False
    row.group = group
    parent = f.rows.get(group) or f.row({"stepName": group})
    item = ev.get("item")
    if type(item) is int:
        row.item = item
        parent.kind = "map"
        items = f.view.maps.get(group)
        if items is None:
            items = f.view.maps[group] = MapItems(group)
        items.add(row)
    else:
        if parent.kind == "step":
            parent.kind = "parallel"
        f.view.steps.append(row)
    return True


def wall_time(row: StepRow, attempt: Attempt) -> None:
    """A group's attempt lasts from its start to its end, whatever ``duration`` says: its
    members ran in between (a failed group's event may say 0 ms)."""
    if row.kind in GROUPS and attempt.start is not None and attempt.end is not None:
        attempt.duration = None


def note_child(row: StepRow, ev: dict[str, Any]) -> None:
    child = ev.get("childId")
    if type(child) is str and child:
        row.child_id, row.kind = child, "call"


def note_parent(view: RunView, ev: dict[str, Any]) -> None:
    parent = ev.get("parentId")
    if type(parent) is str and parent:
        view.parent_id = parent
        step = ev.get("parentStep")
        view.parent_step = step if type(step) is str else None


def is_cancelled(ev: dict[str, Any]) -> bool:
    """A step's ``step:error`` that says it was cancelled rather than failed."""
    return ev.get("status") == "cancelled" or ev.get("errorType") == BRANCH_CANCELLED


def item_undo(f: Folder, name: str) -> StepRow | None:
    """The compensation row of a map's item ``name`` (None when it is no item): kept with
    the map's items, and drawn as one row for the map in the undo section."""
    step = f.rows.get(name)
    if step is None or step.item is None or step.group is None or step.group not in f.view.maps:
        return None
    items = f.view.maps[step.group]
    if items.undo_row is None:
        items.undo_row = StepRow(step.group, compensation=True, kind="map", status="compensating")
        f.view.compensations.append(items.undo_row)
    row = items.undo.get(name)
    if row is None:
        row = items.undo[name] = StepRow(
            name, step.index, compensation=True, group=step.group, item=step.item
        )
        row.status = "compensating"
    return row


def spread_undo(f: Folder, row: StepRow) -> None:
    """After an item's compensation event: the map's undo row spans every item's, and
    reads as failed to undo as soon as one item does."""
    if row.item is None or row.group is None or (items := f.view.maps.get(row.group)) is None:
        return
    whole, last = items.undo_row, row.attempts[-1] if row.attempts else None
    if whole is None or last is None:
        return
    if not whole.attempts:
        whole.attempts.append(Attempt(1, last.start, last.end, "ok", execution=last.execution))
    span = whole.attempts[0]
    if last.start is not None and (span.start is None or last.start < span.start):
        span.start = last.start
    if last.end is not None and (span.end is None or last.end > span.end):
        span.end = last.end
    span.duration = None
    if row.status == "compensation_failed":
        whole.status, span.outcome = "compensation_failed", "error"
        whole.error, whole.error_type = row.error, row.error_type
    elif whole.status == "compensating" and row.status == "compensated":
        whole.status = "compensated"


def nest(view: RunView) -> None:
    """Put each parallel group's branches right under the group's row, in the order
    they first appeared (the definition names only the group)."""
    if not any(row.group is not None for row in view.steps):
        return
    children: dict[str, list[StepRow]] = {}
    top: list[StepRow] = []
    for row in view.steps:
        if row.group is not None:
            children.setdefault(row.group, []).append(row)
        else:
            top.append(row)
    out: list[StepRow] = []
    placed: set[int] = set()

    def place(row: StepRow) -> None:
        if id(row) in placed:
            return
        placed.add(id(row))
        out.append(row)
        for child in children.get(row.name, ()):
            place(child)

    for row in top:
        place(row)
    for row in view.steps:  # a group of groups that never reaches the top: kept, in order
        place(row)
    view.steps = out


def every_row(view: RunView) -> list[StepRow]:
    """The timeline's rows and every map's items."""
    rows = list(view.steps)
    for items in view.maps.values():
        rows.extend(items.by_name.values())
    return rows
