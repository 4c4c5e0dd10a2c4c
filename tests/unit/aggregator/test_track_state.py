"""TrackState's JSON (aggregator/track_state.py), derived from the dataclasses: every field round-trips, and a
state written by an older version (fewer fields) still loads."""

from __future__ import annotations

import json

from blinkstack.aggregator import engine
from blinkstack.aggregator.track_state import EngineConfig, Observation, TrackState


def test_a_state_mid_episode_with_events_and_a_level_round_trips_exactly():
    config, state, t = EngineConfig(), TrackState(), 0
    for i in range(400):
        t += 33_333
        closed = i % 60 < 6 or i > 390  # blinks, then a closure still in progress
        state, _ = engine.step(state, engine.Observation(t, 0.02 if closed else 0.95, 0.02 if closed else 0.95), config)
    assert state.episode is not None and state.last_event is not None and state.blinks and state.segments
    assert TrackState.from_json(state.to_json()) == state


def test_a_state_an_older_version_wrote_loads_with_the_defaults_of_what_it_lacks():
    state, _ = engine.step(TrackState(), Observation(1_000, 0.9, 0.9), EngineConfig())
    raw = json.loads(state.to_json())
    for newer in ("last_known_us", "open_level", "level", "below_since_us", "closure_alerts"):
        del raw[newer]
    old = TrackState.from_json(json.dumps(raw))
    assert old.last_known_us == state.last_us  # then: the last observation
    assert old.open_level == (None, None) and old.closure_alerts == 0
    assert (old.eyes, old.recent, old.observations) == (state.eyes, state.recent, state.observations)
