"""Cursors and event ids over sharded event streams (aggregator/cursor.py)."""

from __future__ import annotations

import pytest

from blinkstack.aggregator import cursor
from blinkstack.common.errors import InvalidInput


def test_one_shard_ids_are_the_redis_ids_and_a_cursor_is_the_last_one():
    assert cursor.public_id("1700000000000-3", 0, 1) == "1700000000000-3"
    assert cursor.parse("1700000000000-3", 1) == ["1700000000000-3"]
    assert cursor.parse("", 1) is None  # only new events
    assert cursor.parse("0", 1) == ["0"]  # every stored event


def test_sharded_ids_name_their_shard_and_a_cursor_holds_one_position_per_shard():
    assert cursor.public_id("5-0", 2, 3) == "5-0@2"
    positions = ["5-0", "7-1", "0"]
    assert cursor.parse(cursor.to_text(positions), 3) == positions
    assert cursor.parse("5-0@2", 3) == ["5-0"] * 3  # after that event, and after its time elsewhere
    assert cursor.parse("1700000000000", 3) == ["1700000000000"] * 3


@pytest.mark.parametrize(
    ("after_id", "shards", "says"),
    [
        ("5-0,6-0", 3, "holds 2 positions, but events are kept in 3 shards"),
        ("5-0,x", 2, "is not a cursor or an event id"),
        ("5-0@3", 3, "is not an event id like"),
        ("5-0@٣", 4, "is not an event id like"),  # a Unicode digit is not a shard number
        ("yesterday", 1, "is not a cursor or an event id"),
    ],
)
def test_anything_else_is_refused_with_what_was_expected(after_id, shards, says):
    with pytest.raises(InvalidInput, match=says):
        cursor.parse(after_id, shards)


def test_newer_orders_by_time_then_sequence_not_as_text():
    assert cursor.newer("10-0", "9-5")  # as text "10-0" < "9-5"
    assert cursor.newer("10-2", "10-1") and not cursor.newer("10-1", "10-1")
