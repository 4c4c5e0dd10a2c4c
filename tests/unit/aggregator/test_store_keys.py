"""Redis key names (aggregator/store.py KeyLayout): one hash tag per shard, so a camera's keys and its shard's
event stream can sit in one Redis Cluster slot and be written in one transaction."""

from __future__ import annotations

import re

from blinkstack.aggregator.store import KeyLayout


def test_a_streams_keys_share_its_shards_hash_tag_with_that_shards_event_stream():
    keys = KeyLayout("bs", shards=4)
    shard = keys.shard_of("cam-7")
    tag = f"bs:{{{shard}}}"
    for key in (keys.track("cam-7", 3), keys.stream("cam-7"), keys.stream_events("cam-7"), keys.tracks("cam-7")):
        assert key.startswith(tag + ":"), key
    assert keys.events(shard) == f"{tag}:events"


def test_streams_spread_over_the_shards_and_keep_their_shard():
    keys = KeyLayout("bs", shards=4)
    shards = {keys.shard_of(f"cam-{i}") for i in range(64)}
    assert shards == {0, 1, 2, 3}
    assert keys.shard_of("cam-1") == KeyLayout("other", shards=4).shard_of("cam-1")  # not the prefix: the id


def test_one_shard_and_distinct_names_per_kind():
    keys = KeyLayout()
    assert keys.shard_of("anything") == 0
    names = {keys.track("s", 1), keys.track("s", 2), keys.stream("s"), keys.stream_events("s"), keys.tracks("s")}
    assert len(names) == 5 and all(re.match(r"blinkstack:\{0\}:", n) for n in names)
