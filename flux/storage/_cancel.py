"""Cancel requests, as every storage keeps them.

`request_cancel` writes `cancel_reason` on a run that is still active, whoever holds it; the
first request's reason is kept. A holder may save a record it loaded before the request was
written: while the stored run is active, a stored reason wins over the record's (so the
holder cannot wipe it), and the record's reason is written only where none is stored. Once the
run has finished no request can be in flight, so a save of a finished run (a `resume` or
`retry_step` restarting it) writes the record's reason, None included.
"""

from __future__ import annotations

from ..status import RunStatus

#: Run states in which a cancel request is recorded (the others are finished).
CANCELLABLE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED, RunStatus.ROLLING_BACK})
_IN = ", ".join(f"'{s.value}'" for s in sorted(CANCELLABLE))

#: `SET` clause of a save: takes the record's reason twice (SQLite `?`; PostgreSQL `%s`).
SAVE_REASON_SQLITE = f"cancel_reason=CASE WHEN status IN ({_IN}) THEN COALESCE(cancel_reason, ?) ELSE ? END"
SAVE_REASON_POSTGRES = SAVE_REASON_SQLITE.replace("?", "%s")
#: `WHERE` condition of `request_cancel`.
ACTIVE_SQL = f"status IN ({_IN})"


def saved_reason(stored_status: RunStatus, stored: str | None, record: str | None) -> str | None:
    """The reason a save leaves stored (the rule above, for storages without SQL)."""
    if stored_status in CANCELLABLE and stored is not None:
        return stored
    return record
