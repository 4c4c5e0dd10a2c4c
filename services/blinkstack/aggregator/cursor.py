"""Event ids and subscription cursors over the sharded event streams.

Events live in `event_shards` Redis streams (one by default; see `store.py`). An event's public id is its Redis
id, `<ms>-<n>`, with `@<shard>` appended when there is more than one shard, so ids stay unique across shards.

A cursor is where a subscription stands: the Redis id of the last event passed on from each shard, in shard
order, comma-separated. With one shard that is just the last event's id, as before shards existed. Every
`BlinkEvent` carries the cursor after it; passing it back as `after_id` resumes exactly, each event once.

`after_id` also takes:
- "" : only events that arrive after the subscription starts;
- "0": every stored event;
- `<ms>-<n>` or `<ms>`: events after that point on every shard (with one shard: after that event);
- `<ms>-<n>@<k>` (an event id): after that event in its shard, and after its time on the other shards.
"""

from __future__ import annotations

from blinkstack.aggregator.event_forms import id_order, is_event_id
from blinkstack.common.errors import InvalidInput, quoted


def public_id(redis_id: str, shard: int, shards: int) -> str:
    """The id clients see for the Redis entry `redis_id` of `shard`."""
    return redis_id if shards == 1 else f"{redis_id}@{shard}"


def to_text(positions: list[str]) -> str:
    return ",".join(positions)


def parse(after_id: str, shards: int) -> list[str] | None:
    """The Redis id to read after, per shard; None for "only new events". InvalidInput if it is neither a
    cursor of this many shards nor an event id."""
    if not after_id:
        return None
    parts = after_id.split(",")
    if len(parts) > 1 or shards == 1:
        if len(parts) != shards:
            raise InvalidInput(
                f"after_id {quoted(after_id)} holds {len(parts)} positions, but events are kept in {shards} "
                "shards: pass an event's cursor from this deployment, an event id, or a time like 1700000000000-0"
            )
        if not all(is_event_id(p) for p in parts):
            raise InvalidInput(f"after_id {quoted(after_id)} is not a cursor or an event id like 1700000000000-0")
        return parts
    redis_id, _, shard = after_id.partition("@")
    if not is_event_id(redis_id) or (shard and not (shard.isascii() and shard.isdigit() and int(shard) < shards)):
        raise InvalidInput(f"after_id {quoted(after_id)} is not an event id like 1700000000000-0@{shards - 1}")
    return [redis_id] * shards


def newer(redis_id: str, position: str) -> bool:
    """Whether `redis_id` comes after `position` in one shard."""
    return id_order(redis_id) > id_order(position)
