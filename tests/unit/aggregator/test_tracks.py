"""TrackBook (aggregator/tracks.py): each track's seq and state, loaded once, advanced by the engine, written back
with its events. The store is a stand-in holding hashes in a dict."""

from __future__ import annotations

import asyncio

from blinkstack.aggregator.engine import EngineConfig, Observation, TrackState
from blinkstack.aggregator.store import KeyLayout
from blinkstack.aggregator.tracks import ACCEPTED, DUPLICATE, LATE, TrackBook


class DictStore:
    def __init__(self, hashes: dict[str, dict[str, str]] | None = None) -> None:
        self.keys = KeyLayout("t")
        self.hashes = hashes or {}
        self.admitted: list[tuple[str, int]] = []

    async def read_hash(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))

    async def admit_track(self, stream_id: str, track_id: int) -> None:
        self.admitted.append((stream_id, track_id))


def blink(book: TrackBook, first_seq: int = 0) -> list[str]:
    """Open, both eyes closed for 200 ms, open: the statuses of each observation."""
    probs = [0.95] * 10 + [0.02] * 6 + [0.95] * 10
    return [
        asyncio.run(book.observe("cam", 1, first_seq + i, Observation(1_000_000 + i * 33_333, p, p))).status
        for i, p in enumerate(probs)
    ]


def test_a_new_track_is_admitted_advanced_and_written_back_once_with_its_event():
    store = DictStore()
    book = TrackBook(store, EngineConfig())  # type: ignore[arg-type]
    assert set(blink(book)) == {ACCEPTED}
    assert store.admitted == [("cam", 1)]
    (write,) = book.writes()
    assert write.key == store.keys.track("cam", 1) and write.seq == 25
    assert [e["type"] for e in write.events] == ["BLINK"]
    assert TrackState.from_json(write.fields["state"]).last_us == book.state("cam", 1).last_us
    assert book.writes() == []  # clean until it changes again


def test_seqs_already_seen_are_duplicates_and_earlier_timestamps_are_late():
    stored = TrackState(last_us=5_000_000)
    store = DictStore({KeyLayout("t").track("cam", 1): {"state": stored.to_json(), "seq": "7"}})
    book = TrackBook(store, EngineConfig())  # type: ignore[arg-type]
    run = lambda seq, t: asyncio.run(book.observe("cam", 1, seq, Observation(t, 0.9, 0.9))).status  # noqa: E731
    assert run(7, 6_000_000) == DUPLICATE  # the stored seq: seen
    assert run(8, 4_000_000) == LATE  # newer seq, but before the stored state's last observation
    assert run(9, 6_000_000) == ACCEPTED
    assert store.admitted == []  # a stored track is not admitted again
