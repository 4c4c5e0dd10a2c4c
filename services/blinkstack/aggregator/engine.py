"""The blink engine: one subject's eye-state time series -> BLINK / WINK / LONG_CLOSURE events and statistics.

Pure and side-effect free: `step(state, observation, config)` returns a new state and the events this
observation completed; nothing else is read or written. The state is plain data (`to_json`/`from_json`), which
is what the aggregator keeps in Redis, so a restarted aggregator or another replica continues a track exactly.

Semantics (all limits in `EngineConfig`; times are the observations' own timestamps, never frame counts):

- Per eye, a reading is first made relative to that eye's own open level (`open_level_*`): a running upper
  envelope of its logit, so each person's (and each camera's) typical open-eye confidence is the reference.
  The logit is shifted so that the open level sits at `open_level_ref`, then turned back into a probability:
  an eye the model sees open at 0.95 and an eye it sees open at 0.9999 both close when they drop well below
  their own level. The level is bounded (`open_level_min`/`_max`), which bounds the shift: a confident eye
  cannot make a mild dip (looking down) count as closed. With `open_level_ref` 0 readings stay absolute.
- Optionally smoothed over `smooth_ms` (mean of the readings in that window); then hysteresis: an eye becomes
  CLOSED at or below `closed_below` and OPEN again at or above `open_above`; readings in between keep its
  state. An eye starts UNKNOWN and must be seen open once before a closure can count, so a track that starts
  with closed eyes never invents an event. With `open_level_prior` (off by default) a new eye is judged against
  that population level until its own exists, and a closure already in progress when the track starts counts:
  on ZJU dev it found the one blink in progress at a clip's first frame and reported four clip starts that the
  annotation calls open (eyes reopening from a blink the annotation does not mark), so it stays off. In video,
  `blink_min_ms` (two frames at 30 frames/s) rather than smoothing rejects single-frame flips, so a short real
  blink is not averaged away.
- An episode is the time during which at least one eye is CLOSED: from the first observation with a closed
  eye to the first observation with both eyes open again. At its end it is classified:
  - both eyes closed together at a moment at least `long_closure_ms` after the episode began: LONG_CLOSURE
    (already reported STARTED at that moment);
  - otherwise, both eyes were closed at some moment, or one was and the other dipped to `partner_dip_below`
    (it half-closed with it; 0, the default, turns this off): BLINK when `blink_min_ms` <= duration <=
    `blink_max_ms` (and below `long_closure_ms`); otherwise nothing (e.g. eyes closing in turns for long);
  - one eye closed while the other was seen, open, in every observation and never below `wink_open_min`,
    with the closed eye at or below `wink_closed_max`: WINK_LEFT / WINK_RIGHT (the subject's own eye) when
    `blink_min_ms` <= duration <= `wink_max_ms`; anything less clear is nothing, never a guessed wink.
- A LONG_CLOSURE is reported while it happens: phase STARTED at the first observation, `long_closure_ms` or
  more into the episode, with both eyes closed; then phase ENDED with the final times when the eyes open.
- A lost track (or a gap longer than `max_gap_ms` between observations) ends the open episode without an event;
  only a LONG_CLOSURE that was already STARTED is ENDED, marked `truncated`, at the last observation.
- Statistics cover a sliding window of `window_s`: time with both eyes open, time with the eyes at least 80 %
  closed (PERCLOS P80, taken as mean relative prob_open <= `perclos_prob_open`), blinks and their durations.

The defaults were chosen on real webcam video, on people the deciding eye-state model had not seen
(`blinkstack-train evaluate-video --cv-models`, ZJU dev half: chosen on one person fold, checked on the
other): the open level bounded to [2, 7.5] around a reference of 6, closed at 0.5 / open at 0.8 (relative
readings), no smoothing, no partner rule. ZJU blinks last up to 930 ms with up to 700 ms fully closed, so a
BLINK may last 1 s and a LONG_CLOSURE starts at 1 s (500 ms called ordinary slow blinks microsleeps); a
blink's duration is in its event for clients that want a stricter rule.

Readings whose errors are independent from one observation to the next (a few frames per second, or crops
drawn independently as in `blinkstack-train evaluate-events`) need smoothing instead: `independent_readings()`
is that preset. Video errors come in runs (a squint, a blurred frame pair), which smoothing cannot remove but
the per-eye open level can.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from blinkstack.aggregator import drowsiness
from blinkstack.aggregator.readings import relative, smooth
from blinkstack.aggregator.track_state import (
    CLOSED,
    OPEN,
    UNKNOWN,
    EngineConfig,
    Episode,
    Event,
    EventType,
    Level,
    Observation,
    Phase,
    TrackState,
)

# The engine's public face: callers use `engine.X` for the data it works on as well as for `step` and `stats`.
__all__ = [
    "EngineConfig",
    "Event",
    "EventType",
    "Level",
    "Observation",
    "Phase",
    "Stats",
    "TrackState",
    "stats",
    "step",
]


def _eye_state(current: str, prob: float | None, config: EngineConfig) -> str:
    if prob is None:
        return current
    if prob >= config.open_above:
        return OPEN
    if prob <= config.closed_below and (current != UNKNOWN or config.open_level_prior):
        return CLOSED
    return current


def _kind(left: float | None, right: float | None, eyes: tuple[str, str], config: EngineConfig) -> str:
    probs = [p for p in (left, right) if p is not None]
    if probs and sum(probs) / len(probs) <= config.perclos_prob_open:
        return "closed80"
    return "open" if eyes == (OPEN, OPEN) else "other"


def _classify(episode: Episode, end_us: int, config: EngineConfig) -> Event | None:
    duration = (end_us - episode.start_us) / 1000.0
    event_type: EventType | None = None
    if episode.long_started:
        event_type = EventType.LONG_CLOSURE  # every ENDED long closure was STARTED first
    elif episode.both_ever or max(episode.min_probs) <= config.partner_dip_below:
        if config.blink_min_ms <= duration <= config.blink_max_ms and duration < config.long_closure_ms:
            event_type = EventType.BLINK
    elif _clear_wink(episode, config) and config.blink_min_ms <= duration <= config.wink_max_ms:
        event_type = EventType.WINK_LEFT if episode.closed[0] else EventType.WINK_RIGHT
    if event_type is None:
        return None
    return Event(event_type, Phase.ENDED, episode.start_us, end_us, episode.min_prob_open)


def _clear_wink(episode: Episode, config: EngineConfig) -> bool:
    """One eye closed, the other seen open throughout: open when it began and never near closing since."""
    closed_eye = 0 if episode.closed[0] else 1
    return (
        episode.other_open_at_start
        and not episode.eye_missing
        and episode.min_probs[1 - closed_eye] >= config.wink_open_min
        and episode.min_probs[closed_eye] <= config.wink_closed_max
    )


def _end_abruptly(state: TrackState) -> tuple[TrackState, list[Event]]:
    """Track lost or observation gap: the episode ends without an event, except a STARTED long closure (ENDED,
    truncated at the last reading)."""
    events = []
    episode = state.episode
    last = state.last_known_us if state.last_known_us is not None else state.last_us
    if episode is not None and episode.long_started and last is not None:
        events.append(Event(EventType.LONG_CLOSURE, Phase.ENDED, episode.start_us, last, episode.min_prob_open, True))
    return replace(state, eyes=(UNKNOWN, UNKNOWN), recent=((), ()), episode=None, last_kind=""), events


def _lower(mins: tuple[float, float], obs: Observation) -> tuple[float, float]:
    """Each eye's lowest reading so far, this observation included (an eye not seen keeps its minimum)."""
    left = mins[0] if obs.left is None else min(mins[0], obs.left)
    right = mins[1] if obs.right is None else min(mins[1], obs.right)
    return left, right


def _trim(items: tuple, horizon: int, end_field: int) -> tuple:
    """Drop items whose `end_field` lies before the window; cheap when nothing is old (the usual case)."""
    if not items or items[0][end_field] > horizon:
        return items
    return tuple(item for item in items if item[end_field] > horizon)


# At most this many state segments are kept for the statistics (a 60 s window at 30 frames/s alternating on
# every frame needs 1,800): observations microseconds apart cannot grow the state, and with it the cost of
# every step and every Redis write, without bound.
MAX_SEGMENTS = 2048


def _add_segment(segments: tuple, start: int, end: int, kind: str) -> tuple:
    if segments and segments[-1][2] == kind and segments[-1][1] == start:
        return (*segments[:-1], (segments[-1][0], end, kind))
    return (*segments[-(MAX_SEGMENTS - 1) :], (start, end, kind))


def _unknown(state: TrackState, obs: Observation, config: EngineConfig) -> tuple[TrackState, list[Event]]:
    """Neither eye readable (both UNKNOWN): missing evidence. No episode starts, runs or ends on it, and the time
    counts for neither open nor closed; once the last reading is more than max_gap_ms old, the episode ends as
    after a gap in the observations."""
    events: list[Event] = []
    last = state.last_known_us
    if last is not None and (obs.timestamp_us - last) / 1000.0 > config.max_gap_ms:
        state, events = _end_abruptly(state)
    state = replace(state, last_us=obs.timestamp_us, last_kind="", observations=state.observations + 1)
    return _record(state, events), events


def step(state: TrackState, obs: Observation, config: EngineConfig) -> tuple[TrackState, list[Event]]:
    """Feed one observation (timestamps must increase; the caller drops duplicates and late ones)."""
    events: list[Event] = []
    if state.last_us is not None and obs.timestamp_us <= state.last_us:
        raise ValueError(f"observation at {obs.timestamp_us} us is not after the last one ({state.last_us} us)")
    if obs.track_lost:
        state, events = _end_abruptly(state)
        state = replace(state, last_us=obs.timestamp_us, observations=state.observations + 1)
        return _record(state, events), events

    if obs.left is None and obs.right is None:
        return _unknown(state, obs, config)

    segments = state.segments
    # The gap since the last reading: UNKNOWN observations in between are no evidence either.
    if state.last_known_us is not None and (obs.timestamp_us - state.last_known_us) / 1000.0 > config.max_gap_ms:
        state, events = _end_abruptly(state)
    elif state.last_us is not None and state.last_kind:
        segments = _add_segment(segments, state.last_us, obs.timestamp_us, state.last_kind)

    probs = [p for p in (obs.left, obs.right) if p is not None]
    lowest = min(probs) if probs else 1.0  # events report the raw prob_open
    dt_ms = (obs.timestamp_us - state.last_us) / 1000.0 if state.last_us is not None else None
    open_level, obs = relative(state.open_level, obs, dt_ms, config)
    recent, smoothed = smooth(state.recent, obs, config)
    before = state.eyes
    eyes = (_eye_state(before[0], smoothed[0], config), _eye_state(before[1], smoothed[1], config))
    closed_now = (eyes[0] == CLOSED, eyes[1] == CLOSED)
    now = obs.timestamp_us
    episode, ended = _advance_episode(state.episode, before, closed_now, obs, lowest, config)
    events.extend(ended)

    horizon = now - int(config.window_s * 1e6)
    state = TrackState(
        eyes=eyes,
        recent=recent,
        last_us=now,
        last_known_us=now,
        last_kind=_kind(smoothed[0], smoothed[1], eyes, config),
        episode=episode,
        segments=_trim(segments, horizon, end_field=1),
        blinks=_trim(state.blinks, horizon, end_field=0),
        last_event=state.last_event,
        observations=state.observations + 1,
        events=state.events,
        open_level=open_level,
        level=state.level,
        below_since_us=state.below_since_us,
        closure_alerts=state.closure_alerts,
    )
    state = _record(state, events)
    summary = stats(state, config)
    state, alerts = drowsiness.update(
        state, summary.perclos, summary.observed_us / 1e6, summary.blink_count, summary.mean_blink_duration_ms, config
    )
    return _record(state, alerts), events + alerts


def _advance_episode(
    episode: Episode | None,
    before: tuple[str, str],
    closed_now: tuple[bool, bool],
    obs: Observation,
    lowest: float,
    config: EngineConfig,
) -> tuple[Episode | None, list[Event]]:
    """Start, extend or end the closure episode with this observation; the events it completes."""
    now = obs.timestamp_us
    events: list[Event] = []
    if episode is None and any(closed_now):
        first = 0 if closed_now[0] else 1
        other = 1 - first
        episode = Episode(
            start_us=now,
            closed=closed_now,
            other_open_at_start=closed_now[other] or before[other] == OPEN,
            both_since_us=now if all(closed_now) else None,
            both_ever=all(closed_now),
            min_prob_open=lowest,
            min_probs=_lower((1.0, 1.0), obs),
            eye_missing=obs.left is None or obs.right is None,
        )
    elif episode is not None:
        both = all(closed_now)
        episode = Episode(
            start_us=episode.start_us,
            closed=(episode.closed[0] or closed_now[0], episode.closed[1] or closed_now[1]),
            other_open_at_start=episode.other_open_at_start,
            both_since_us=(episode.both_since_us if episode.both_since_us is not None else now) if both else None,
            both_ever=episode.both_ever or both,
            min_prob_open=min(episode.min_prob_open, lowest),
            long_started=episode.long_started,
            min_probs=_lower(episode.min_probs, obs),
            eye_missing=episode.eye_missing or obs.left is None or obs.right is None,
        )
        if not any(closed_now):
            event = _classify(episode, now, config)
            if event is not None:
                events.append(event)
            episode = None

    if (
        episode is not None
        and not episode.long_started
        and episode.both_since_us is not None
        and (now - episode.start_us) / 1000.0 >= config.long_closure_ms
    ):
        events.append(Event(EventType.LONG_CLOSURE, Phase.STARTED, episode.start_us, now, episode.min_prob_open))
        episode = replace(episode, long_started=True)
    return episode, events


def _record(state: TrackState, events: list[Event]) -> TrackState:
    if not events:
        return state
    blinks = state.blinks + tuple((e.end_us, e.duration_ms) for e in events if e.type == EventType.BLINK)
    return replace(state, blinks=blinks, last_event=events[-1], events=state.events + len(events))


@dataclass(frozen=True)
class Stats:
    window_us: int
    blink_count: int
    blinks_per_minute: float
    perclos: float
    open_ratio: float
    mean_blink_duration_ms: float
    last_event: Event | None
    last_timestamp_us: int | None
    observed_us: int = 0  # time in the window with readings
    level: Level = Level.UNSPECIFIED


def stats(state: TrackState, config: EngineConfig) -> Stats:
    """Statistics over the window that ends at the track's last observation."""
    window_us = int(config.window_s * 1e6)
    start = (state.last_us or 0) - window_us
    segments = [(max(s, start), e, k) for s, e, k in state.segments if e > start]  # clipped to the window
    observed = sum(e - s for s, e, _ in segments)
    by_kind = {kind: sum(e - s for s, e, k in segments if k == kind) for kind in ("open", "closed80")}
    span_us = (segments[-1][1] - segments[0][0]) if segments else 0
    minutes = min(window_us, span_us) / 60e6
    durations = [d for _, d in state.blinks]
    return Stats(
        window_us=window_us,
        blink_count=len(durations),
        blinks_per_minute=len(durations) / minutes if minutes > 0 else 0.0,
        perclos=by_kind["closed80"] / observed if observed else 0.0,
        open_ratio=by_kind["open"] / observed if observed else 0.0,
        mean_blink_duration_ms=sum(durations) / len(durations) if durations else 0.0,
        observed_us=observed,
        level=state.level,
        last_event=state.last_event,
        last_timestamp_us=state.last_us,
    )
