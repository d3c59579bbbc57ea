"""flux/schedules.py's pure core: which slots a worker starts at `now`, for each `catch_up`
(on time, missed while all workers were down, the cap of `"all"`, a gap of a year)."""

from __future__ import annotations

import pytest

from flux.cron import Every, parse_cron
from flux.schedules import MAX_CATCH_UP, Firing, plan_firing, slot_id

from .test_cron import iso, utc

TABLE = [
    # catch_up, every, next_due, now -> start, skipped, next_due
    ("latest", 1, 10, 9.99, None),
    ("latest", 1, 10, 10.0, Firing((10,), 0, 11)),
    ("latest", 1, 10, 10.3, Firing((10,), 0, 11)),
    ("none", 1, 10, 10.9, Firing((10,), 0, 11)),
    ("all", 1, 10, 10.3, Firing((10,), 0, 11)),
    # all workers down from 10 to 15.5: 10..14 missed, 15 is on time
    ("latest", 1, 10, 15.5, Firing((14, 15), 4, 16)),
    ("all", 1, 10, 15.5, Firing((10, 11, 12, 13, 14, 15), 0, 16)),
    ("none", 1, 10, 15.5, Firing((15,), 5, 16)),
    # hourly, a worker 30 s late is on time; 2 minutes late, the slot is missed
    ("none", 3600, 7200, 7230, Firing((7200,), 0, 10800)),
    ("none", 3600, 7200, 7320, Firing((), 1, 10800)),
    ("latest", 3600, 7200, 7320, Firing((7200,), 0, 10800)),
    ("latest", 3600, 3600, 18120, Firing((18000,), 4, 21600)),
    ("all", 3600, 3600, 18120, Firing((3600, 7200, 10800, 14400, 18000), 0, 21600)),
    ("none", 3600, 3600, 18120, Firing((), 5, 21600)),
    ("none", 3600, 3600, 18030, Firing((18000,), 4, 21600)),
]


@pytest.mark.parametrize(("catch_up", "every", "next_due", "now", "expected"), TABLE)
def test_firing_table(catch_up: str, every: int, next_due: int, now: float, expected: Firing | None) -> None:
    assert plan_firing(Every(every), catch_up, next_due, now) == expected


def test_all_runs_at_most_the_1000_most_recent_missed_slots() -> None:
    firing = plan_firing(Every(1), "all", 0, 1_000_000.5)
    assert firing is not None
    assert len(firing.start) == MAX_CATCH_UP + 1  # + the slot that is on time
    assert firing.start[0] == 1_000_000 - MAX_CATCH_UP and firing.start[-1] == 1_000_000
    assert firing.skipped >= 10_000 - MAX_CATCH_UP - 1 and not firing.exact
    assert firing.next_due == 1_000_001


def test_a_year_down_is_not_walked_slot_by_slot() -> None:
    # 31 million one-second slots: the window grows from `now` backwards instead
    firing = plan_firing(Every(1), "latest", 0, 31_536_000.2)
    assert firing is not None and firing.start == (31_535_999, 31_536_000)
    firing = plan_firing(parse_cron("* * * * *"), "none", 0, 31_536_000.2)
    assert firing is not None and firing.start == (31_536_000,) and firing.next_due == 31_536_060


def test_a_daily_cron_after_three_days_down() -> None:
    cron = parse_cron("0 2 * * *", "Europe/Paris")
    due = utc("2026-11-29T01:00:00Z")
    now = utc("2026-12-02T09:00:00Z")
    for catch_up, runs in (("latest", ["2026-12-02T01:00:00Z"]), ("none", []),
                           ("all", ["2026-11-29T01:00:00Z", "2026-11-30T01:00:00Z",
                                    "2026-12-01T01:00:00Z", "2026-12-02T01:00:00Z"])):  # fmt: skip
        firing = plan_firing(cron, catch_up, due, now)
        assert firing is not None
        assert [iso(s) for s in firing.start] == runs, catch_up
        assert iso(firing.next_due) == "2026-12-03T01:00:00Z"


def test_slot_ids() -> None:
    assert slot_id("nightly", utc("2026-12-02T01:00:00Z")) == "nightly@2026-12-02T01:00:00Z"
    assert slot_id("a@b", 0) == "a@b@1970-01-01T00:00:00Z"
