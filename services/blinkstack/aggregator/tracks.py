"""Observations -> engine -> Redis writes, for one RPC: validation, de-duplication, late frames, batching.

A `TrackBook` caches the tracks one RPC touches (loaded from Redis on first use, so a restarted aggregator or
another replica continues them) and turns what happened since the last commit into `Write`s: per track the
newest state and seq, and every event in order. Redis stays the source of truth: nothing here outlives the RPC.

Rules, per (stream_id, track_id):
- an observation whose seq is not above the newest seq seen is a DUPLICATE and changes nothing;
- an observation with a new seq but a timestamp not after the newest one is LATE: its seq is remembered (so a
  re-send is a duplicate) but it is not fed to the engine, whose time must only move forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from blinkstack.aggregator import event_forms
from blinkstack.aggregator.engine import EngineConfig, Event, Observation, TrackState, step
from blinkstack.aggregator.store import MAX_SEQ, RedisStore, Write
from blinkstack.common.errors import InvalidInput
from blinkstack.common.images import check_stream_id
from blinkstack.common.security import require_stream

ACCEPTED, DUPLICATE, LATE = "accepted", "duplicate", "late"
# Tracks one RPC keeps cached: a stream of observations for ever new track ids must not grow without bound.
MAX_TRACKS_PER_CALL = 10_000


def check_probability(value: float, what: str) -> None:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{what}: prob_open must be a finite number in [0, 1] (got {value})")


@dataclass
class _Entry:
    state: TrackState
    seq: int  # -1: nothing seen
    dirty: bool = False
    events: list[Event] = field(default_factory=list)


@dataclass
class Outcome:
    status: str
    events: list[Event]


class TrackBook:
    def __init__(self, store: RedisStore, config: EngineConfig) -> None:
        self.store, self.config = store, config
        self._entries: dict[tuple[str, int], _Entry] = {}

    async def entry(self, stream_id: str, track_id: int) -> _Entry:
        key = (stream_id, track_id)
        if key not in self._entries:
            if len(self._entries) >= MAX_TRACKS_PER_CALL:  # at most a batch (ingest.MAX_BATCH) is pending
                self._forget_clean()
            stored = await self.store.read_hash(self.store.keys.track(stream_id, track_id))
            if "state" not in stored:
                await self.store.admit_track(stream_id, track_id)  # a new track: within its stream's cap
            state = TrackState.from_json(stored["state"]) if "state" in stored else TrackState()
            self._entries[key] = _Entry(state, int(stored.get("seq", -1)))
        return self._entries[key]

    def _forget_clean(self) -> None:
        """Drop the cached tracks with nothing left to write: Redis has them, the next use reloads them."""
        self._entries = {key: entry for key, entry in self._entries.items() if entry.dirty}

    async def observe(self, stream_id: str, track_id: int, seq: int, obs: Observation) -> Outcome:
        entry = await self.entry(stream_id, track_id)
        if seq <= entry.seq:
            return Outcome(DUPLICATE, [])
        entry.seq, entry.dirty = seq, True
        if entry.state.last_us is not None and obs.timestamp_us <= entry.state.last_us:
            return Outcome(LATE, [])
        entry.state, emitted = step(entry.state, obs, self.config)
        entry.events.extend(emitted)
        return Outcome(ACCEPTED, emitted)

    def state(self, stream_id: str, track_id: int) -> TrackState | None:
        entry = self._entries.get((stream_id, track_id))
        return entry.state if entry else None

    def writes(self) -> list[Write]:
        """Pending writes, each with its track's events in order; marks everything clean."""
        writes = []
        for (stream_id, track_id), entry in self._entries.items():
            if not entry.dirty:
                continue
            writes.append(
                Write(
                    self.store.keys.track(stream_id, track_id),
                    stream_id,
                    entry.seq,
                    {"state": entry.state.to_json()},
                    [event_forms.to_fields(e, stream_id, track_id) for e in entry.events],
                )
            )
            entry.dirty, entry.events = False, []
        return writes


def check_seq(seq: int, what: str) -> None:
    if seq > MAX_SEQ:
        raise InvalidInput(f"{what} {seq} exceeds the largest seq, 2^53 - 1 = {MAX_SEQ}")


def observation_from_request(request, what: str = "observation") -> Observation:
    """Validate an `EyeObservation` message into an engine observation."""
    check_stream_id(request.stream_id, f"{what}.stream_id")
    require_stream(request.stream_id, f"{what}.stream_id")
    if request.track_id == 0:
        raise InvalidInput(f"{what}.track_id must be > 0")
    check_seq(request.seq, f"{what}.seq")
    if request.timestamp_us <= 0:
        raise InvalidInput(f"{what}.timestamp_us must be set (> 0, microseconds)")
    left = request.left_prob_open if request.HasField("left_prob_open") else None
    right = request.right_prob_open if request.HasField("right_prob_open") else None
    for value, name in ((left, "left_prob_open"), (right, "right_prob_open")):
        if value is not None:
            check_probability(value, f"{what}.{name}")
    return Observation(request.timestamp_us, left, right, request.track_lost)
