"""Drowsiness levels of a track (AWAKE, DROWSY, ASLEEP) from its eye-state time series, and the alerts.

The evidence, all from readings of the eyes (an UNKNOWN observation changes nothing):
- PERCLOS, P80: the share of the statistics window (60 s) with the eyes at least 80 % closed. Wierwille et al.
  (1994, "Research on vehicle-based driver status/performance monitoring", NHTSA DOT HS 808 247) and Dinges &
  Grace (1998, "PERCLOS: a valid psychophysiological measure of alertness", FHWA-MCRT-98-006) found it the most
  reliable ocular measure of drowsiness; one minute windows and thresholds of 0.15 (drowsy) are the usual
  reading of their results. Defaults: DROWSY at >= 0.15, ASLEEP at >= 0.30. It counts only once half the window
  has been observed: a few seconds with one blink say nothing.
- Blink duration: blinks lengthen with sleepiness, from 100-300 ms to 400 ms and more (Caffier et al. 2003,
  Eur J Appl Physiol 89:319; Schleicher et al. 2008, Ergonomics 51:982). DROWSY when the window's mean blink
  duration is >= 400 ms over at least 3 blinks.
- Sustained closure: both eyes closed for >= 3 s is ASLEEP (a microsleep); while they stay closed, alerts
  escalate at 3, 5 and 11 s, the pattern openpilot's driver monitoring uses for its escalating alerts.
A level rises as soon as the evidence supports it, and falls only after the evidence has stayed below it for
`recovery_s` (10 s), so a driver who just closed the eyes is not declared AWAKE by one open frame.
Every change of level, and every escalation, is a DROWSINESS event on the track's event stream.
"""

from __future__ import annotations

from dataclasses import replace

from blinkstack.aggregator.track_state import EngineConfig, Event, EventType, Level, Phase, TrackState

MIN_BLINKS = 3  # blinks in the window before their mean duration counts


def evidence_level(
    perclos: float, observed_s: float, blinks: int, mean_blink_ms: float, closed_ms: float, config: EngineConfig
) -> Level:
    """The level the current evidence supports."""
    level = Level.AWAKE
    if observed_s >= config.window_s / 2:
        if perclos >= config.asleep_perclos:
            level = Level.ASLEEP
        elif perclos >= config.drowsy_perclos:
            level = Level.DROWSY
    if blinks >= MIN_BLINKS and mean_blink_ms >= config.drowsy_blink_ms:
        level = max(level, Level.DROWSY)
    if closed_ms >= config.asleep_closure_ms:
        level = Level.ASLEEP
    return level


def update(
    state: TrackState, perclos: float, observed_s: float, blinks: int, mean_blink_ms: float, config: EngineConfig
) -> tuple[TrackState, list[Event]]:
    """Move the track's level towards what the evidence at its last observation supports (PERCLOS and blinks
    over the window, as `engine.stats` gives them, and how long both eyes have been closed), and emit what
    changed: level changes and sustained-closure escalations."""
    now = state.last_us or 0
    closed_since = state.episode.both_since_us if state.episode is not None else None
    closed_us = now - closed_since if closed_since is not None else 0
    target = evidence_level(perclos, observed_s, blinks, mean_blink_ms, closed_us / 1000.0, config)
    events: list[Event] = []
    level, below_since = state.level or Level.AWAKE, state.below_since_us
    if target > level:
        level, below_since = target, None
        events.append(Event(EventType.DROWSINESS, Phase.STARTED, now, now, 1.0, level=level))
    elif target < level:
        below_since = now if below_since is None else below_since
        if (now - below_since) / 1e6 >= config.recovery_s:
            level, below_since = target, None
            events.append(Event(EventType.DROWSINESS, Phase.STARTED, now, now, 1.0, level=level))
    else:
        below_since = None
    alerts = state.closure_alerts if closed_since is not None else 0
    while (
        closed_since is not None
        and alerts < len(config.closure_alerts_s)
        and closed_us / 1e6 >= config.closure_alerts_s[alerts]
    ):
        alerts += 1
        events.append(
            Event(EventType.DROWSINESS, Phase.STARTED, closed_since, now, 1.0, level=level, escalation=alerts)
        )
    return replace(state, level=level, below_since_us=below_since, closure_alerts=alerts), events
