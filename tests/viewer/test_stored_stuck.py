"""viewer.stuck: a stored run and the time in, why it is stuck (and what unsticks it) out."""

from __future__ import annotations

import pytest

from flux.records import Lease, RunRecord
from flux.status import RunStatus
from viewer.stuck import classify, span

NOW = 1_000_000.0
DAY = 86400.0


def record(status: RunStatus, **kw: object) -> RunRecord:
    fields: dict[str, object] = {"updated_at": NOW - 10, "created_at": NOW - 20}
    fields.update(kw)
    return RunRecord("r1", "wf", status, "{}", **fields)  # type: ignore[arg-type]


def lease(expires_at: float, owner: str = "host:1:abc") -> Lease:
    return Lease(owner, "host", 1, expires_at, "")


DEAD = "host:1:dead"

ROWS = [
    # (record, expected (reason, action) or None)
    (record(RunStatus.RUNNING, lease=lease(NOW + 30)), None),
    (record(RunStatus.RUNNING), ("no_lease", "recover")),
    (record(RunStatus.RUNNING, lease=lease(NOW - 1)), ("lease_expired", "recover")),
    (record(RunStatus.ROLLING_BACK, lease=lease(NOW - 120)), ("lease_expired", "recover")),
    (record(RunStatus.RUNNING, lease=lease(NOW + 30, owner=DEAD)), ("holder_dead", "recover")),
    (record(RunStatus.RUNNING, lease=lease(NOW + 30), deadline=NOW - 5), ("past_deadline", "cancel")),
    (record(RunStatus.SUSPENDED, deadline=NOW - 5), ("past_deadline", "cancel")),
    (record(RunStatus.SUSPENDED, deadline=NOW + 5), None),
    (record(RunStatus.SUSPENDED, waiting_for="approval", updated_at=NOW - DAY + 1), None),
    (
        record(RunStatus.SUSPENDED, waiting_for="approval", updated_at=NOW - DAY - 1),
        ("suspended_long", "signal"),
    ),
    # asleep until a time ahead: its timer wakes it, however long it has slept
    (record(RunStatus.SUSPENDED, wake_at=NOW + DAY, updated_at=NOW - 9 * DAY), None),
    (record(RunStatus.SUSPENDED, wake_at=NOW - DAY + 1, updated_at=NOW - 9 * DAY), None),
    (record(RunStatus.SUSPENDED, wake_at=NOW - DAY - 1, updated_at=NOW - 9 * DAY), ("overdue", "recover")),
    (record(RunStatus.SUSPENDED, updated_at=NOW - 2 * DAY), ("suspended_long", "cancel")),
    # a wait for a signal with a timeout ahead is still a wait nobody answered
    (
        record(RunStatus.SUSPENDED, waiting_for="x", wake_at=NOW + DAY, updated_at=NOW - 2 * DAY),
        ("suspended_long", "signal"),
    ),
    (record(RunStatus.PENDING), None),
    (record(RunStatus.PENDING, deadline=NOW - 1), ("past_deadline", "cancel")),
    # finished runs are never stuck, whatever their leftovers say
    (record(RunStatus.COMPLETED, deadline=NOW - 5), None),
    (record(RunStatus.FAILED, lease=lease(NOW - 100)), None),
    (record(RunStatus.CANCELLED, updated_at=NOW - 9 * DAY), None),
]


@pytest.mark.parametrize(("run", "expected"), ROWS)
def test_classify(run: RunRecord, expected: tuple[str, str] | None) -> None:
    got = classify(run, NOW, holder_dead=lambda held: held.owner == DEAD)
    assert (None if got is None else (got.reason, got.action)) == expected


def test_the_threshold_is_the_callers() -> None:
    run = record(RunStatus.SUSPENDED, waiting_for="approval", updated_at=NOW - 3600 - 1)
    assert classify(run, NOW) is None
    stuck = classify(run, NOW, stuck_after=3600)
    assert stuck is not None and stuck.detail == "waiting for approval for 1h"


def test_span() -> None:
    assert [span(s) for s in (0, 59, 60, 3599, 3600, 86400 * 3 + 5, -4)] == [
        "0s",
        "59s",
        "1m",
        "59m",
        "1h",
        "3d",
        "0s",
    ]
