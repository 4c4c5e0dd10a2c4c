"""The blink engine, without Redis: worked examples and hypothesis properties over random timelines."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blinkstack.aggregator.engine import (
    EngineConfig,
    EventType,
    Level,
    Observation,
    Phase,
    TrackState,
    stats,
    step,
)
from tests.helpers.engine import CLOSED_P, CONFIG, OPEN_P, run, timeline

# --- worked examples -----------------------------------------------------------------------------------------


def test_a_blink_is_reported_when_the_eyes_reopen_with_its_duration():
    _, events = run(timeline([(10, OPEN_P, OPEN_P), (6, CLOSED_P, CLOSED_P), (10, OPEN_P, OPEN_P)]))
    (blink,) = events
    assert blink.type == EventType.BLINK and blink.phase == Phase.ENDED
    assert blink.duration_ms == pytest.approx(200, abs=0.1)  # 6 frames at 30 fps
    assert blink.min_prob_open == CLOSED_P


def test_winks_name_the_subjects_eye_and_need_the_other_eye_open():
    _, left = run(timeline([(10, OPEN_P, OPEN_P), (9, CLOSED_P, OPEN_P), (5, OPEN_P, OPEN_P)]))
    _, right = run(timeline([(10, OPEN_P, OPEN_P), (9, OPEN_P, CLOSED_P), (5, OPEN_P, OPEN_P)]))
    assert [e.type for e in left] == [EventType.WINK_LEFT]
    assert [e.type for e in right] == [EventType.WINK_RIGHT]


def test_a_long_closure_starts_at_the_limit_and_ends_when_the_eyes_open():
    _, events = run(timeline([(5, OPEN_P, OPEN_P), (45, CLOSED_P, CLOSED_P), (5, OPEN_P, OPEN_P)]))
    started, ended = events
    assert (started.type, started.phase) == (EventType.LONG_CLOSURE, Phase.STARTED)
    assert started.duration_ms == pytest.approx(CONFIG.long_closure_ms, abs=34)
    assert (ended.type, ended.phase) == (EventType.LONG_CLOSURE, Phase.ENDED)
    assert ended.start_us == started.start_us and ended.duration_ms == pytest.approx(1500, abs=0.1)


def test_eyes_closing_in_turns_for_long_is_no_long_closure():
    spec = [(5, OPEN_P, OPEN_P), (10, CLOSED_P, OPEN_P), (1, CLOSED_P, CLOSED_P), (20, OPEN_P, CLOSED_P)]
    _, events = run(timeline([*spec, (5, OPEN_P, OPEN_P)]))
    assert events == []  # 1 s episode, both closed only for one frame at its start: neither blink nor long


def test_hysteresis_ignores_readings_between_the_thresholds():
    _, events = run(timeline([(10, OPEN_P, OPEN_P), (20, 0.45, 0.45), (10, OPEN_P, OPEN_P)]))
    assert events == []
    _, events = run(timeline([(10, OPEN_P, OPEN_P), (3, CLOSED_P, CLOSED_P), (3, 0.45, 0.45), (5, OPEN_P, OPEN_P)]))
    assert [e.duration_ms for e in events] == [pytest.approx(200, abs=0.1)]  # closed until a reading >= 0.6


def test_nothing_is_invented_when_a_track_starts_closed_or_is_lost():
    _, events = run(timeline([(6, CLOSED_P, CLOSED_P), (10, OPEN_P, OPEN_P)]))
    assert events == []  # the closure started before the track did
    obs = timeline([(10, OPEN_P, OPEN_P), (4, CLOSED_P, CLOSED_P)])
    _, events = run([*obs, Observation(obs[-1].timestamp_us + 33_000, track_lost=True)])
    assert events == []


def test_a_population_prior_lets_a_closure_in_progress_at_a_tracks_start_count():
    starts_closed = timeline([(6, CLOSED_P, CLOSED_P), (10, OPEN_P, OPEN_P)])
    prior = EngineConfig(open_level_prior=5.0)
    _, events = run(starts_closed, prior)
    (blink,) = events
    assert blink.type == EventType.BLINK and blink.duration_ms == pytest.approx(200, abs=0.1)
    assert run(starts_closed, EngineConfig())[1] == []  # off: the eye must be seen open first
    # The level starts at the prior, or at the first reading when that is higher (an open eye).
    state, _ = step(TrackState(), Observation(1, 0.02, 0.9999), prior)
    assert state.open_level[0] == 5.0 and state.open_level[1] == pytest.approx(9.21, abs=0.01)
    # A reading that is low but well above closed for the population is open (0.7: logit 0.85 against the prior
    # 5 reads 0.86), and one well below it closed (0.05 reads 0.14).
    state, _ = step(TrackState(), Observation(1, 0.7, 0.05), prior)
    assert state.eyes == ("open", "closed")
    with pytest.raises(ValueError, match="open_level_prior"):
        EngineConfig(open_level_prior=-1)


def test_a_lost_track_ends_a_started_long_closure_as_truncated():
    obs = timeline([(5, OPEN_P, OPEN_P), (40, CLOSED_P, CLOSED_P)])
    _, events = run([*obs, Observation(obs[-1].timestamp_us + 33_000, track_lost=True)])
    assert [(e.type, e.phase, e.truncated) for e in events] == [
        (EventType.LONG_CLOSURE, Phase.STARTED, False),
        (EventType.LONG_CLOSURE, Phase.ENDED, True),
    ]
    assert events[1].end_us == obs[-1].timestamp_us


def test_a_gap_longer_than_the_limit_ends_the_episode_without_an_event():
    before = timeline([(10, OPEN_P, OPEN_P), (3, CLOSED_P, CLOSED_P)])
    after = [Observation(before[-1].timestamp_us + 2_000_000 + i * 33_333, OPEN_P, OPEN_P) for i in range(5)]
    _, events = run(before + after)
    assert events == []


def test_out_of_order_observations_are_refused():
    state, _ = run(timeline([(3, OPEN_P, OPEN_P)]))
    with pytest.raises(ValueError, match="not after the last one"):
        step(state, Observation(state.last_us, OPEN_P, OPEN_P), CONFIG)


def test_statistics_over_the_window():
    # 60 s at 30 fps: 10 blinks of 200 ms, otherwise open.
    spec = [(174, OPEN_P, OPEN_P), (6, CLOSED_P, CLOSED_P)] * 10 + [(1, OPEN_P, OPEN_P)]
    state, events = run(timeline(spec))
    result = stats(state, CONFIG)
    assert result.blink_count == len(events) == 10
    assert result.blinks_per_minute == pytest.approx(10, rel=0.02)
    assert result.mean_blink_duration_ms == pytest.approx(200, abs=0.1)
    assert result.perclos == pytest.approx(60 / 1800, abs=0.005)
    assert result.open_ratio == pytest.approx(1 - 60 / 1800, abs=0.005)


def test_smoothing_removes_single_frame_flips_but_keeps_real_blinks():
    smoothing = EngineConfig(smooth_ms=50, closed_below=0.2, open_above=0.5, open_level_ref=0)
    flips = [(10, OPEN_P, OPEN_P), (1, CLOSED_P, CLOSED_P)] * 20 + [(10, OPEN_P, OPEN_P)]
    assert run(timeline(flips), smoothing)[1] == []
    assert len(run(timeline(flips), CONFIG)[1]) == 0  # one frame (33 ms) is below blink_min without smoothing too
    doubles = [(10, OPEN_P, OPEN_P), (2, CLOSED_P, CLOSED_P)] * 20 + [(10, OPEN_P, OPEN_P)]
    assert len(run(timeline(doubles), CONFIG)[1]) == 20  # 67 ms flips pass as blinks unsmoothed...
    _, events = run(timeline([(10, OPEN_P, OPEN_P), (6, CLOSED_P, CLOSED_P), (10, OPEN_P, OPEN_P)]), smoothing)
    assert [e.type for e in events] == [EventType.BLINK]  # ...while a 200 ms blink survives smoothing


# Realistic model outputs on webcam eyes: a confident open eye, a less confident one (glasses), closed eyes.
CONFIDENT, UNSURE, SHUT = 0.9999, 0.95, 0.005


def test_defaults_judge_each_eye_against_its_own_open_level():
    defaults = EngineConfig()
    # An eye the model sees open at only 0.95 still blinks when it drops to 0.005...
    _, events = run(timeline([(30, UNSURE, CONFIDENT), (4, SHUT, SHUT), (10, UNSURE, CONFIDENT)]), defaults)
    assert [e.type for e in events] == [EventType.BLINK]
    # ...while a 0.95 reading from an eye whose open level is 0.9999 is no closure (a mild dip: looking down).
    _, events = run(timeline([(30, CONFIDENT, CONFIDENT), (20, UNSURE, UNSURE), (10, CONFIDENT, CONFIDENT)]), defaults)
    assert events == []
    # An unsure eye (open at 0.9) wavering to 0.15 is no closure relative to its own level, where an absolute
    # threshold of 0.3 calls it one.
    waver = timeline([(30, 0.9, 0.9), (4, 0.15, 0.15), (10, 0.9, 0.9)])
    assert run(waver, defaults)[1] == []
    assert [e.type for e in run(waver, CONFIG)[1]] == [EventType.BLINK]
    # The level survives a restart from stored state.
    state, _ = run(timeline([(30, UNSURE, CONFIDENT)]), defaults)
    assert TrackState.from_json(state.to_json()).open_level == state.open_level


def test_ordinary_slow_blinks_are_blinks_and_only_a_second_of_closure_is_long():
    defaults = EngineConfig()
    _, events = run(timeline([(30, CONFIDENT, CONFIDENT), (21, SHUT, SHUT), (10, CONFIDENT, CONFIDENT)]), defaults)
    assert [e.type for e in events] == [EventType.BLINK]  # 700 ms closed: the longest blink of the ZJU dev half
    _, events = run(timeline([(30, CONFIDENT, CONFIDENT), (40, SHUT, SHUT), (10, CONFIDENT, CONFIDENT)]), defaults)
    assert [(e.type, e.phase) for e in events] == [
        (EventType.LONG_CLOSURE, Phase.STARTED),
        (EventType.LONG_CLOSURE, Phase.ENDED),
    ]


def test_a_half_closing_partner_eye_makes_a_blink_and_winks_need_clear_evidence():
    defaults = EngineConfig()
    # With the partner rule on, one eye shut and the other dipping with it (0.9 against a level of 0.9999) is a
    # blink; by default (off) it is neither a blink nor a wink.
    partner = timeline([(30, CONFIDENT, CONFIDENT), (5, SHUT, 0.9), (10, CONFIDENT, CONFIDENT)])
    assert [e.type for e in run(partner, EngineConfig(partner_dip_below=0.9))[1]] == [EventType.BLINK]
    assert run(partner, defaults)[1] == []
    # A clear wink: the other eye stays at its open level throughout.
    _, events = run(timeline([(30, CONFIDENT, CONFIDENT), (8, SHUT, CONFIDENT), (10, CONFIDENT, CONFIDENT)]), defaults)
    assert [e.type for e in events] == [EventType.WINK_LEFT]
    # The other eye not seen during the episode, or the closed one only half down: nothing is guessed.
    unseen = timeline([(30, CONFIDENT, CONFIDENT), (4, SHUT, CONFIDENT), (4, SHUT, None), (10, CONFIDENT, CONFIDENT)])
    assert run(unseen, defaults)[1] == []
    half = timeline([(30, CONFIDENT, CONFIDENT), (8, 0.5, CONFIDENT), (10, CONFIDENT, CONFIDENT)])
    assert run(half, defaults)[1] == []
    assert [e.type for e in run(half, EngineConfig(wink_closed_max=0.2))[1]] == [
        EventType.WINK_LEFT
    ]  # closed, not deep


def test_config_is_validated():
    with pytest.raises(ValueError, match="closed_below < open_above"):
        EngineConfig(closed_below=0.7, open_above=0.6)
    with pytest.raises(ValueError, match="wink_open_min must be in"):
        EngineConfig(wink_open_min=1.5)
    with pytest.raises(ValueError, match="open_level_min <= open_level_max"):
        EngineConfig(open_level_min=8, open_level_max=7)
    with pytest.raises(ValueError, match="must be > 0"):
        EngineConfig(open_level_fall_ms=0)


# --- properties over random timelines ------------------------------------------------------------------------

runs = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=1, max_value=40)),  # (closed?, frames) per run
    min_size=1,
    max_size=30,
)
frame_gaps = st.integers(min_value=5_000, max_value=60_000)  # 5-60 ms between frames: below max_gap


@st.composite
def eye_timelines(draw, one_eye_only: bool = False):
    """Random open/closed runs with probabilities drawn on the right side of the thresholds."""
    observations, t, truth = [], 1_000_000, []
    for closed, frames in draw(runs):
        start = t
        for _ in range(frames):
            p = draw(st.floats(0.0, 0.3)) if closed else draw(st.floats(0.6, 1.0))
            other = draw(st.floats(0.6, 1.0)) if one_eye_only else p
            observations.append(Observation(t, p, other))
            t += draw(frame_gaps)
        truth.append((closed, start))
    return observations, truth


def qualifying_closed_runs(truth: list[tuple[bool, int]], config: EngineConfig) -> int:
    """Closed runs preceded by an open run and ended by one, lasting blink_min..blink_max (below long)."""
    count = 0
    for (before, _), (closed, start), (after, end) in zip(truth, truth[1:], truth[2:], strict=False):
        duration = (end - start) / 1000.0
        if not before and closed and not after and config.blink_min_ms <= duration <= config.blink_max_ms:
            count += duration < config.long_closure_ms
    return count


def merged(truth: list[tuple[bool, int]]) -> list[tuple[bool, int]]:
    """Adjacent runs with the same state are one run."""
    out: list[tuple[bool, int]] = []
    for closed, start in truth:
        if not out or out[-1][0] != closed:
            out.append((closed, start))
    return out


@settings(max_examples=200, deadline=None)
@given(eye_timelines())
def test_blinks_equal_qualifying_closed_runs(data):
    observations, truth = data
    _, events = run(observations)
    blinks = [e for e in events if e.type == EventType.BLINK]
    assert len(blinks) == qualifying_closed_runs(merged(truth), CONFIG)


@settings(max_examples=200, deadline=None)
@given(st.one_of(eye_timelines(), eye_timelines(one_eye_only=True)))
def test_events_never_overlap_and_durations_respect_their_limits(data):
    observations, _ = data
    _, events = run(observations)
    ended = [e for e in events if e.phase == Phase.ENDED]
    for event in ended:
        duration = event.duration_ms
        if event.type == EventType.BLINK:
            assert CONFIG.blink_min_ms <= duration <= CONFIG.blink_max_ms and duration < CONFIG.long_closure_ms
        elif event.type in (EventType.WINK_LEFT, EventType.WINK_RIGHT):
            assert CONFIG.blink_min_ms <= duration <= CONFIG.wink_max_ms
        else:
            assert duration >= CONFIG.long_closure_ms
    for eye_types in (
        {EventType.BLINK, EventType.LONG_CLOSURE, EventType.WINK_LEFT},
        {EventType.BLINK, EventType.LONG_CLOSURE, EventType.WINK_RIGHT},
    ):
        intervals = sorted((e.start_us, e.end_us) for e in ended if e.type in eye_types)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(intervals))
    started = [e.start_us for e in events if e.phase == Phase.STARTED and e.type == EventType.LONG_CLOSURE]
    long_ended = [e.start_us for e in ended if e.type == EventType.LONG_CLOSURE]
    assert long_ended == started[: len(long_ended)] and len(started) - len(long_ended) <= 1  # STARTED, then ENDED


@settings(max_examples=150, deadline=None)
@given(eye_timelines(), st.integers(min_value=0, max_value=10_000))
def test_replays_and_restarts_from_stored_state_give_the_same_events(data, cut_seed):
    observations, _ = data
    _, once = run(observations)
    _, again = run(observations)
    assert once == again
    cut = cut_seed % (len(observations) + 1)
    state, first = run(observations[:cut])
    restored = TrackState.from_json(state.to_json())
    assert restored == state
    _, rest = run(observations[cut:], state=restored)
    assert first + rest == once


# --- UNKNOWN readings: missing evidence -------------------------------------------------------------------------


@st.composite
def with_unknown_stretches(draw):
    """A random timeline whose readings are partly replaced by UNKNOWN (None for both eyes), in stretches."""
    observations, _ = draw(eye_timelines())
    mixed, i = [], 0
    while i < len(observations):
        length = draw(st.integers(1, 40))
        unknown = draw(st.booleans())
        for obs in observations[i : i + length]:
            mixed.append(replace(obs, left=None, right=None) if unknown else obs)
        i += length
    return mixed


@settings(max_examples=200, deadline=None)
@given(with_unknown_stretches())
def test_no_episode_starts_or_ends_on_an_unknown_reading(mixed):
    _, events = run(mixed)
    known = {obs.timestamp_us for obs in mixed if obs.left is not None}
    for event in events:
        assert event.start_us in known
        assert event.end_us in known  # truncated ones too: they end at the last reading


@settings(max_examples=200, deadline=None)
@given(with_unknown_stretches())
def test_no_event_spans_an_unknown_stretch_longer_than_the_gap_limit(mixed):
    _, events = run(mixed)
    for event in (e for e in events if not e.truncated):
        inside = [obs for obs in mixed if event.start_us <= obs.timestamp_us <= event.end_us]
        known_times = [obs.timestamp_us for obs in inside if obs.left is not None]
        assert all((b - a) / 1000 <= CONFIG.max_gap_ms for a, b in itertools.pairwise(known_times))


@settings(max_examples=100, deadline=None)
@given(eye_timelines())
def test_a_track_seen_only_as_unknown_emits_nothing_and_counts_no_time(data):
    observations, _ = data
    state, events = run([replace(obs, left=None, right=None) for obs in observations])
    assert events == [] and state.segments == () and state.episode is None


# --- drowsiness levels ----------------------------------------------------------------------------------------


def drowsiness_events(events: list) -> list:
    return [e for e in events if e.type == EventType.DROWSINESS]


def test_perclos_makes_a_track_drowsy_a_sustained_closure_escalates_and_recovery_brings_it_back():
    config = replace(CONFIG, asleep_perclos=0.5)
    # 40 s of 700 ms closures every 3 s (PERCLOS ~0.23), then 6 s closed, then 80 s open.
    heavy = [(69, OPEN_P, OPEN_P), (21, CLOSED_P, CLOSED_P)] * 13
    spec = [(30, OPEN_P, OPEN_P), *heavy, (180, CLOSED_P, CLOSED_P), (2400, OPEN_P, OPEN_P)]
    state, events = run(timeline(spec), config)
    changes = [(e.level, e.escalation) for e in drowsiness_events(events)]
    assert changes == [
        (Level.DROWSY, 0),
        (Level.ASLEEP, 0),  # 3 s with both eyes closed
        (Level.ASLEEP, 1),
        (Level.ASLEEP, 2),  # 5 s; the closure ends before 11 s
        (Level.DROWSY, 0),  # 10 s after the eyes reopened, PERCLOS still high
        (Level.AWAKE, 0),
    ]
    escalations = [e for e in drowsiness_events(events) if e.escalation]
    assert [round(e.duration_ms / 1000) for e in escalations] == [3, 5]
    assert state.level == Level.AWAKE and stats(state, config).level == Level.AWAKE
    assert len({e.key("s", 1) for e in events}) == len(events)  # a level change and an alert never share a key


def test_long_blinks_make_a_track_drowsy():
    slow = [(40, OPEN_P, OPEN_P), (14, CLOSED_P, CLOSED_P)] * 4  # 467 ms blinks
    _, events = run(timeline([(30, OPEN_P, OPEN_P), *slow, (30, OPEN_P, OPEN_P)]))
    assert [(e.level, e.escalation) for e in drowsiness_events(events)] == [(Level.DROWSY, 0)]


@settings(max_examples=40, deadline=None)  # each example adds 72 s of open eyes: 2,160 steps
@given(eye_timelines())
def test_open_eyes_never_raise_a_level_and_every_track_recovers(data):
    observations, _ = data
    open_only = [replace(obs, left=max(obs.left, 0.9), right=max(obs.right, 0.9)) for obs in observations]
    _, events = run(open_only)
    assert drowsiness_events(events) == []
    state, events = run(observations)
    t = observations[-1].timestamp_us
    recovery = timeline([(int((CONFIG.window_s + CONFIG.recovery_s + 2) * 30), OPEN_P, OPEN_P)])
    shifted = [replace(obs, timestamp_us=obs.timestamp_us - recovery[0].timestamp_us + t + 33_333) for obs in recovery]
    state, _ = run(shifted, state=state)
    assert state.level == Level.AWAKE


@settings(max_examples=150, deadline=None)
@given(eye_timelines())
def test_a_level_falls_only_after_the_recovery_time(data):
    observations, _ = data
    _, events = run(observations)
    changes = [e for e in drowsiness_events(events) if not e.escalation]
    previous_level, previous_at = Level.AWAKE, None
    for change in changes:
        if change.level < previous_level and previous_at is not None:
            assert (change.start_us - previous_at) / 1e6 >= CONFIG.recovery_s
        previous_level, previous_at = change.level, change.start_us
