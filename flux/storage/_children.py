"""Child runs (`.call`, SPEC §11), as every storage keeps them: the write that ends a child
also wakes its parent, in the same transaction.

A parent waits for its child `suspended` with `waiting_for = "child:<child id>"`. The save
that puts a child (a run with `parent_id`) into a final state makes that parent due at once
(`wake_at = due_at = ` the child's `updated_at`, `timer = "child"`), so that a worker takes
it and its call step reads the child's outcome. The other order is covered too: the save
that suspends a parent on a child already final makes the parent due in the same write, so
a child that ended while its parent was still on its way to sleep never leaves it asleep.

A parent that ends (cancelled, at its deadline, or failed while a child still runs) leaves no
child running: the same write records a cancel request on its unfinished children, as
`request_cancel` would, and makes a suspended one due, so that a worker cancels it at once;
the children's own ends do the same for theirs.
"""

from __future__ import annotations

from ..records import RunRecord
from ..status import RUN_TERMINAL, RunStatus
from ._cancel import ACTIVE_SQL
from ._text import to_column

#: The parent's `timer` once its child has ended (`flux.core.timers.woke` reads it).
CHILD_TIMER = "child"
#: What a parent's `waiting_for` starts with while its child runs.
PREFIX = "child:"

_FINAL = ", ".join(f"'{s.value}'" for s in sorted(RUN_TERMINAL))


def waiting_for(child_id: str) -> str:
    return PREFIX + child_id


def ends_child(run: RunRecord) -> bool:
    """Whether saving `run` ends a child run: its parent is then to be woken."""
    return run.parent_id is not None and run.status in RUN_TERMINAL


def ends_parent(run: RunRecord) -> bool:
    """Whether saving `run` ends a run that may have children (it has `.call` steps)."""
    return run.status in RUN_TERMINAL and any(s.kind == "call" for s in run.steps)


def orphan_reason(parent: RunRecord) -> str:
    """The cancel reason of the children left unfinished by their parent's end."""
    return f"its parent run '{parent.id}' ended {parent.status.value}: {parent.error or 'no error'}"


def awaited_child(run: RunRecord) -> str | None:
    """The id of the child that `run` is saved waiting for, or None."""
    w = run.waiting_for
    if run.status is RunStatus.SUSPENDED and w is not None and w.startswith(PREFIX):
        return w[len(PREFIX) :]
    return None


def wake_parent_sql(mark: str, least: str) -> str:
    """Make the parent due if it waits for this child. Parameters: wake time (three times),
    parent id, the parent's `waiting_for`."""
    return (
        f"UPDATE flux_runs SET wake_at={mark}, timer='{CHILD_TIMER}', "
        f"due_at={least}({mark}, COALESCE(deadline, {mark})) "
        f"WHERE id={mark} AND status='suspended' AND waiting_for={mark}"
    )


def wake_self_sql(mark: str, least: str) -> str:
    """Make the run just saved due if the child it waits for has already ended. Parameters:
    wake time (three times), run id, its `waiting_for`, the child's id."""
    return (
        wake_parent_sql(mark, least)
        + f" AND EXISTS (SELECT 1 FROM flux_runs c WHERE c.id={mark} AND c.status IN ({_FINAL}))"
    )


#: A finished child whose parent has not read it yet (`prune` keeps it: the parent, woken,
#: would find no child and start another).
UNREAD_CHILD = (  # a correlated lookup by the parent's id (its primary key), for both planners
    "(parent_id IS NULL OR COALESCE((SELECT p.status FROM flux_runs p WHERE p.id = flux_runs.parent_id), "
    "'completed') IN ('completed', 'failed', 'rolled_back', 'rollback_failed', 'cancelled'))"
)


def wake_parent_params(child: RunRecord) -> tuple[object, ...]:
    at = child.updated_at
    return (at, at, at, child.parent_id, to_column(waiting_for(child.id)))


def wake_self_params(run: RunRecord, child_id: str) -> tuple[object, ...]:
    at = run.updated_at
    return (at, at, at, run.id, to_column(run.waiting_for), child_id)


def cancel_children_sql(mark: str) -> str:
    """Request the cancel of the parent's unfinished children. Parameters: the reason, the
    moment (twice: a suspended child's wake and due time), the parent id."""
    return (
        f"UPDATE flux_runs SET cancel_reason={mark}, "
        f"wake_at=CASE WHEN status='suspended' THEN {mark} ELSE wake_at END, "
        f"due_at=CASE WHEN status='suspended' THEN {mark} ELSE due_at END "
        f"WHERE parent_id={mark} AND cancel_reason IS NULL AND {ACTIVE_SQL}"
    )


def cancel_children_params(parent: RunRecord) -> tuple[object, ...]:
    at = parent.updated_at
    return (to_column(orphan_reason(parent)), at, at, parent.id)
