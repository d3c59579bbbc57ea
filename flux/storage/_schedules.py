"""The columns of `flux_schedules`, and schedules to and from its rows (SQLite and
PostgreSQL share them; they differ only in placeholders)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..schedules import ScheduleRecord

SCHEDULE_COLUMNS = "id, workflow, cron, every, timezone, catch_up, input, next_due, last_slot, created_at"
SCHEDULE_WIDTH = 10


def schedule_values(s: ScheduleRecord) -> tuple[Any, ...]:
    return (
        s.id, s.workflow, s.cron, s.every, s.timezone, s.catch_up, s.input_json, s.next_due,
        s.last_slot, s.created_at,
    )  # fmt: skip


def schedule_from_values(r: Sequence[Any]) -> ScheduleRecord:
    return ScheduleRecord(
        id=r[0], workflow=r[1], cron=r[2], every=r[3], timezone=r[4], catch_up=r[5],
        input_json=r[6], next_due=r[7], last_slot=r[8], created_at=r[9],
    )  # fmt: skip
