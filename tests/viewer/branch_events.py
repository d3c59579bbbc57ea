"""Hand-written traces of branches (SPEC §11), in the engine's vocabulary: a parallel
group whose branches run at once, a map over many items, a call to a child run.

Shared by the viewer tests and the end-to-end tests."""

from __future__ import annotations

from typing import Any

from tests.viewer.factory import T0, RunWriter

CHECKOUT_STEPS = (
    ("validate", False),
    ("reserve", False),
    ("thumbnails", False),
    ("invoice", False),
    ("charge", True),
)

#: ``meta.steps`` of the checkout as the engine writes it: the kind of each group, and each
#: branch with its group (a map's items are not named).
CHECKOUT_META = [
    {"name": "validate", "commit": False},
    {"name": "reserve", "commit": False, "kind": "parallel"},
    {"name": "stock", "commit": False, "group": "reserve"},
    {"name": "fraud", "commit": False, "group": "reserve"},
    {"name": "thumbnails", "commit": False, "kind": "map"},
    {"name": "invoice", "commit": False, "kind": "call"},
    {"name": "charge", "commit": True},
]


class BranchWriter(RunWriter):
    """A run's events, with the branch fields: ``group``, ``item``, ``childId``."""

    def branch_start(self, name: str, group: str, attempt: int = 1, **extra: Any) -> dict[str, Any]:
        ev = self.step_start(name, attempt=attempt)
        ev.update(group=group, **extra)
        return ev

    def branch_complete(self, name: str, group: str, output: Any = None, **extra: Any) -> dict[str, Any]:
        ev = self.complete(name, output)
        ev.update(group=group, **extra)
        return ev

    def branch_error(
        self, name: str, group: str, error: str, error_type: str, **extra: Any
    ) -> dict[str, Any]:
        ev = self.step_error(name, error, error_type)
        ev.update(group=group, **extra)
        return ev

    def branch_retry(self, name: str, group: str, attempt: int, error: str, **extra: Any) -> dict[str, Any]:
        ev = self.retry(name, attempt, error)
        ev.update(group=group, **extra)
        return ev

    def child_start(self, parent_id: str, parent_step: str, input: Any = None) -> dict[str, Any]:
        ev = self.start(input)
        ev.update(parentId=parent_id, parentStep=parent_step)
        return ev


def parallel_events(
    w: BranchWriter, group: str = "reserve", a: str = "stock", b: str = "fraud"
) -> list[dict[str, Any]]:
    """Two branches at once: ``b`` fails once and is retried; both complete."""
    return [
        w.step_start(group),
        w.branch_start(a, group),
        w.branch_start(b, group),
        w.branch_retry(b, group, 1, "fraud service busy"),
        w.branch_start(b, group, attempt=2),
        w.branch_complete(a, group, {"held": 2}),
        w.branch_complete(b, group, {"score": 0.1}),
        w.complete(group, {a: {"held": 2}, b: {"score": 0.1}}),
    ]


def map_events(
    w: BranchWriter,
    group: str = "thumbnails",
    items: int = 5,
    failed: tuple[int, ...] = (),
    running: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    """``items`` items one after the other; ``failed`` fail for good, ``running`` never end."""
    out = [w.step_start(group)]
    for i in range(items):
        name = f"{group}[{i}]"
        out.append(w.branch_start(name, group, item=i))
        if i in running:
            continue
        if i in failed:
            out.append(w.branch_error(name, group, f"cannot resize item {i}", "ValueError", item=i))
        else:
            out.append(w.branch_complete(name, group, {"thumb": f"{i}.png"}, item=i))
    if not running and not failed:
        out.append(w.complete(group, [{"thumb": f"{i}.png"} for i in range(items)]))
    return out


def call_events(
    parent: BranchWriter, step: str = "invoice"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The parent's events for a call, and the child run's, which runs in between."""
    child_id = f"{parent.run_id}/{step}"
    child = BranchWriter(
        child_id, workflow="invoice-flow", steps=(("render", False), ("send", False)), t0=parent.now
    )
    start = parent.step_start(step)
    start["childId"] = child_id
    child_events = [
        child.child_start(parent.run_id, step, {"order": parent.run_id}),
        child.step_start("render"),
        child.complete("render", "pdf"),
        child.step_start("send"),
        child.complete("send", True),
        child.finish({"sent": True}),
    ]
    parent.now = child.now
    done = parent.complete(step, {"sent": True})
    done["childId"] = child_id
    return [start, done], child_events


def checkout(run_id: str = "CO-1", items: int = 5, t0: float = T0) -> list[dict[str, Any]]:
    """A whole checkout: validate, a parallel group, a map, a call, a commit; the child
    run's events come between the parent's, as they would in a shared trace."""
    w = BranchWriter(run_id, workflow="checkout", steps=CHECKOUT_STEPS, t0=t0)
    events = [
        w.start({"id": run_id, "images": items}),
        w.step_start("validate"),
        w.complete("validate", True),
    ]
    events[0]["meta"]["steps"] = CHECKOUT_META  # as the engine writes it: branches named, with their group
    events += parallel_events(w)
    events += map_events(w, items=items)
    parent, child = call_events(w)
    events += [parent[0], *child, parent[1]]
    events += [w.step_start("charge"), w.complete("charge", {"paid": True}), w.finish({"paid": True})]
    return events
