"""flux/cron.py: the cron grammar, the next slot in a timezone (DST gaps and folds, month
ends), `every=` and the errors that name the field."""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import pairwise

import pytest

from flux.cron import Every, load_zone, parse_cron
from flux.errors import ScheduleError


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


NEXT = [
    # expression, zone, after (UTC), the next slots (UTC)
    ("* * * * *", "UTC", "2026-12-02T00:00:30Z", ["2026-12-02T00:01:00Z", "2026-12-02T00:02:00Z"]),
    ("*/15 * * * *", "UTC", "2026-12-02T00:00:00Z", ["2026-12-02T00:15:00Z", "2026-12-02T00:30:00Z"]),
    ("5-20/5 * * * *", "UTC", "2026-12-02T00:06:00Z", ["2026-12-02T00:10:00Z", "2026-12-02T00:15:00Z"]),
    ("10/20 * * * *", "UTC", "2026-12-02T00:30:00Z", ["2026-12-02T00:50:00Z", "2026-12-02T01:10:00Z"]),
    ("0 9 * * MON-FRI", "UTC", "2026-12-05T12:00:00Z", ["2026-12-07T09:00:00Z", "2026-12-08T09:00:00Z"]),
    ("0 0 * * 7", "UTC", "2026-12-02T00:00:00Z", ["2026-12-06T00:00:00Z", "2026-12-13T00:00:00Z"]),
    ("0 0 1 jan,Jul *", "UTC", "2026-12-02T00:00:00Z", ["2027-01-01T00:00:00Z", "2027-07-01T00:00:00Z"]),
    ("@hourly", "UTC", "2026-12-02T00:30:00Z", ["2026-12-02T01:00:00Z", "2026-12-02T02:00:00Z"]),
    ("@daily", "UTC", "2026-12-02T00:30:00Z", ["2026-12-03T00:00:00Z", "2026-12-04T00:00:00Z"]),
    ("@midnight", "UTC", "2026-12-02T00:30:00Z", ["2026-12-03T00:00:00Z"]),
    ("@weekly", "UTC", "2026-12-02T00:30:00Z", ["2026-12-06T00:00:00Z", "2026-12-13T00:00:00Z"]),
    ("@monthly", "UTC", "2026-12-02T00:30:00Z", ["2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"]),
    ("@yearly", "UTC", "2026-12-02T00:30:00Z", ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ("@annually", "UTC", "2026-12-02T00:30:00Z", ["2027-01-01T00:00:00Z"]),
    # month ends: the 31st skips the short months; Feb 29 waits for a leap year (2100 is not)
    ("0 0 31 * *", "UTC", "2026-04-01T00:00:00Z", ["2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z"]),
    ("0 12 29 2 *", "UTC", "2026-03-01T00:00:00Z", ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]),
    ("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", ["2104-02-29T00:00:00Z"]),
    ("0 0 30 */1 *", "UTC", "2027-01-31T00:00:00Z", ["2027-03-30T00:00:00Z"]),
    # both day fields restricted: either matches (13th or Friday); a `*` one: only the other
    ("0 0 13 * FRI", "UTC", "2026-11-01T00:00:00Z", ["2026-11-06T00:00:00Z", "2026-11-13T00:00:00Z",
                                                     "2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z",
                                                     "2026-12-04T00:00:00Z", "2026-12-11T00:00:00Z",
                                                     "2026-12-13T00:00:00Z"]),
    ("0 0 */1 * FRI", "UTC", "2026-11-01T00:00:00Z", ["2026-11-06T00:00:00Z", "2026-11-13T00:00:00Z"]),
    ("0 0 13 * *", "UTC", "2026-11-01T00:00:00Z", ["2026-11-13T00:00:00Z", "2026-12-13T00:00:00Z"]),
    # Europe/Paris: 02:00 CET -> 03:00 CEST on 2026-03-29; 03:00 CEST -> 02:00 CET on 2026-10-25
    ("30 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
    ("30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z", ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
    ("0 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", ["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"]),
    # every minute of the missing hour collapses into one slot at 03:00, then 03:00 itself is it
    ("*/30 2-3 * * *", "Europe/Paris", "2026-03-28T23:00:00Z",
     ["2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:00:00Z"]),
    # the repeated hour runs once: 02:00..02:40 CEST, then nothing until 03:00 CET
    ("*/20 * * * *", "Europe/Paris", "2026-10-24T23:50:00Z",
     ["2026-10-25T00:00:00Z", "2026-10-25T00:20:00Z", "2026-10-25T00:40:00Z", "2026-10-25T02:00:00Z"]),
    # America/New_York: 02:00 EST -> 03:00 EDT on 2026-03-08; 02:00 EDT -> 01:00 EST on 2026-11-01
    ("30 2 * * *", "America/New_York",
     "2026-03-07T12:00:00Z", ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]),
    ("30 1 * * *", "America/New_York",
     "2026-10-31T12:00:00Z", ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]),
    ("0 9 * * *", "America/New_York",
     "2026-03-07T12:00:00Z", ["2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z"]),
    # Australia/Sydney: 03:00 AEDT -> 02:00 AEST on 2026-04-05; 02:00 AEST -> 03:00 AEDT on 2026-10-04
    ("30 2 * * *", "Australia/Sydney",
     "2026-04-04T00:00:00Z", ["2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"]),
    ("30 2 * * *", "Australia/Sydney",
     "2026-10-03T00:00:00Z", ["2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"]),
    # Asia/Kolkata: +05:30, no DST
    ("0 9 * * *", "Asia/Kolkata", "2026-12-02T00:00:00Z", ["2026-12-02T03:30:00Z", "2026-12-03T03:30:00Z"]),
    # Pacific/Chatham: 02:45 +12:45 -> 03:45 +13:45 on 2026-09-27: 03:00 does not exist
    ("0 3 * * *", "Pacific/Chatham",
     "2026-09-26T00:00:00Z", ["2026-09-26T14:00:00Z", "2026-09-27T13:15:00Z"]),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), NEXT)
def test_next_slots(expr: str, zone: str, after: str, expected: list[str]) -> None:
    cron = parse_cron(expr, zone)
    t, got = utc(after), []
    for _ in expected:
        t = cron.next_after(t)
        got.append(iso(t))
    assert got == expected


def test_next_is_strictly_after_a_slot() -> None:
    cron = parse_cron("0 * * * *")
    assert iso(cron.next_after(utc("2026-12-02T01:00:00Z"))) == "2026-12-02T02:00:00Z"
    assert iso(cron.next_after(utc("2026-12-02T00:59:59Z"))) == "2026-12-02T01:00:00Z"


def test_from_inside_the_repeated_hour_the_slots_already_run_are_not_run_again() -> None:
    cron = parse_cron("*/20 * * * *", "Europe/Paris")
    # 01:10Z is 02:10 CET, the second 02:10: 02:20 and 02:40 ran in the first 02:xx
    assert iso(cron.next_after(utc("2026-10-25T01:10:00Z"))) == "2026-10-25T02:00:00Z"


def test_every_counts_from_the_epoch() -> None:
    assert Every(3600).next_after(3599) == 3600
    assert Every(3600).next_after(3600) == 7200
    assert Every(1).next_after(41) == 42


def test_a_year_away_is_found_without_walking_its_minutes() -> None:
    # Walking minutes would take half a million steps per slot; fields take a few hundred.
    cron = parse_cron("0 0 29 2 MON")  # every Monday of February, or Feb 29
    t = utc("2026-03-01T00:00:00Z")
    slots = []
    for _ in range(2000):
        t = cron.next_after(t)
        slots.append(t)
    assert iso(slots[0]) == "2027-02-01T00:00:00Z"
    assert all(b > a for a, b in pairwise(slots))


BAD = [
    ("61 * * * *", "minute field '61' out of range 0-59"),
    ("* 24 * * *", "hour field '24' out of range 0-23"),
    ("* * 0 * *", "day-of-month field '0' out of range 1-31"),
    ("* * * 13 *", "month field '13' out of range 1-12"),
    ("* * * * 8", "day-of-week field '8' out of range 0-7"),
    ("* * * FOO *", "month field 'FOO': 'FOO' is not a number (or a name: JAN..DEC)"),
    ("* * * * MON-XYZ", "day-of-week field 'MON-XYZ': 'XYZ' is not a number"),
    ("*/0 * * * *", "minute field '*/0': step 0 out of range 1-59"),
    ("*/x * * * *", "minute field '*/x': step 'x' is not a number"),
    ("5-2 * * * *", "minute field '5-2': range '5-2' starts after it ends"),
    ("1,,2 * * * *", "minute field '1,,2': empty list item"),
    ("-1 * * * *", "minute field '-1': '' is not a number"),
    ("0 0 30 2 *", "day-of-month field '30' never occurs in month field '2'"),
    ("0 0 31 4,6,9,11 *", "day-of-month field '31' never occurs"),
    ("* * * *", "has 4 fields; expected 5"),
    ("", "has 0 fields; expected 5"),
    ("@every5m", "unknown macro"),
    ("0 99999999999999999999999999999999 * * *", "hour field '99999999999999999999...' out of range 0-23"),
    ("\x1b[2J * * * *", "minute field '\\x1b[2J': '\\x1b[2J' is not a number"),
    ("\u0661 * * * *", "is not a number"),  # an Arabic-Indic digit one: not ASCII
]


@pytest.mark.parametrize(("expr", "message"), BAD)
def test_bad_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_cron(expr)
    assert message in str(info.value)
    assert "\x1b" not in str(info.value)


def test_a_non_string_is_refused() -> None:
    with pytest.raises(ScheduleError, match="must be a string"):
        parse_cron(5)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "../../etc/passwd", "Europe/Paris\x00", "\ud800", None, 3]
)
def test_unknown_timezones(name: object) -> None:
    with pytest.raises(ScheduleError, match="unknown timezone"):
        load_zone(name)


def test_known_timezone_and_text_is_normalised() -> None:
    assert load_zone("Europe/Paris").key == "Europe/Paris"
    assert parse_cron("  0   2 * * *  ").text == "0 2 * * *"
