"""Values as a Python developer reads them (viewer/values.py), from the engine's stored
encoding (flux/serialization.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

from flux import serialization
from viewer.values import MAX_CHILDREN, py_repr, short, tree


@dataclasses.dataclass
class TripRequest:
    traveler: str
    budget: Decimal
    when: dt.datetime
    ref: uuid.UUID
    blob: bytes


def stored(value: object) -> object:
    """``value`` as the engine writes it into the trace: its JSON, decoded as plain JSON."""
    return serialization.loads_plain(serialization.dumps(value, path="input"))


def test_the_engines_encoding_reads_back_as_python() -> None:
    trip = TripRequest(
        "Grace Hopper", Decimal("99.80"), dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.timezone.utc),
        uuid.UUID("12345678-1234-5678-1234-567812345678"), b"\x00\x01",
    )  # fmt: skip
    assert py_repr(stored(trip)) == (
        "TripRequest(traveler='Grace Hopper', budget=Decimal('99.80'), "
        "when=datetime(2026, 12, 2, 9, 30, tzinfo=timezone.utc), "
        "ref=UUID('12345678-1234-5678-1234-567812345678'), blob=b'\\x00\\x01')"
    )
    assert py_repr(stored({"day": dt.date(2026, 12, 2)})) == "{'day': date(2026, 12, 2)}"


def test_a_users_dict_holding_the_tag_key_reads_as_it_was() -> None:
    assert py_repr(stored({"__flux_type__": "mine", "n": 1})) == "{'__flux_type__': 'mine', 'n': 1}"


def test_hostile_strings_come_out_as_their_repr() -> None:
    assert py_repr("\x00\x1b[31m\ud800<b>") == "'\\x00\\x1b[31m\\ud800<b>'"


def test_an_int_too_long_to_print_is_described() -> None:
    assert py_repr(10**5000) == "<int of about 5001 digits>"


def test_trees_nest_and_stop_at_a_count() -> None:
    node = tree({"items": list(range(MAX_CHILDREN + 5))})
    ((key, items),) = node.children
    assert key == "'items': " and len(items.children) == MAX_CHILDREN and items.more == 5
    assert short(list(range(1000)), limit=20).endswith("…") and len(short(list(range(1000)), limit=20)) == 20


def test_a_broken_tagged_value_does_not_break_the_page() -> None:
    assert (
        py_repr({"__flux_type__": "datetime", "value": "not a date"})
        == "datetime.fromisoformat('not a date')"
    )
    assert py_repr({"__flux_type__": "bytes", "value": "%%%"}) == "bytes(base64='%%%')"
