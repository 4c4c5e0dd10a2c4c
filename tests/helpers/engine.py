"""Engine timelines for tests: confident readings, observation sequences, and running the engine over them."""

from __future__ import annotations

from blinkstack.aggregator.engine import EngineConfig, Event, Observation, TrackState, step

# The properties generate readings on either side of 0.3 / 0.6 and test the state machine itself: no smoothing,
# absolute prob_open (no per-eye open level).
CONFIG = EngineConfig(closed_below=0.3, open_above=0.6, smooth_ms=0, open_level_ref=0)
OPEN_P, CLOSED_P = 1 - 2**-10, 2**-10  # confident readings as a webcam model gives them, exact in float32


def run(observations: list[Observation], config: EngineConfig = CONFIG, state: TrackState | None = None):
    state = state or TrackState()
    events: list[Event] = []
    for obs in observations:
        state, new = step(state, obs, config)
        events.extend(new)
    return state, events


def timeline(spec: list[tuple[int, float | None, float | None]], fps: float = 30.0) -> list[Observation]:
    """[(frames, left, right)] -> observations at `fps` starting at t=1 s."""
    observations, t = [], 1_000_000.0
    for frames, left, right in spec:
        for _ in range(frames):
            observations.append(Observation(round(t), left, right))
            t += 1e6 / fps
    return observations
