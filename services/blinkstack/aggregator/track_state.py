"""The blink engine's data: its settings, an observation, an event, an episode and a track's state.

All plain, immutable data; `TrackState` round-trips through JSON, which is what the aggregator keeps in Redis.
The rules that move a state forward are in `engine.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum, IntEnum
from functools import cache
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

UNKNOWN, OPEN, CLOSED = "unknown", "open", "closed"


class EventType(IntEnum):  # values as in blinkstack.v1.EventType
    BLINK = 1
    WINK_LEFT = 2
    WINK_RIGHT = 3
    LONG_CLOSURE = 4
    DROWSINESS = 5


class Level(IntEnum):  # values as in blinkstack.v1.DrowsinessLevel
    UNSPECIFIED = 0
    AWAKE = 1
    DROWSY = 2
    ASLEEP = 3


class Phase(IntEnum):  # values as in blinkstack.v1.EventPhase
    STARTED = 1
    ENDED = 2


@dataclass(frozen=True)
class EngineConfig:
    closed_below: float = 0.5
    open_above: float = 0.8
    smooth_ms: float = 0.0
    blink_min_ms: float = 50.0
    blink_max_ms: float = 1000.0
    wink_max_ms: float = 1000.0
    long_closure_ms: float = 1000.0
    max_gap_ms: float = 1000.0
    window_s: float = 60.0
    perclos_prob_open: float = 0.2
    # A one-eyed episode is a BLINK when the other eye's prob_open also dipped to this (it half-closed with
    # it: glasses, a low-resolution eye), and a WINK only on clear evidence: the other eye stayed at or above
    # `wink_open_min` in every observation and the closed one fell to `wink_closed_max` or below.
    partner_dip_below: float = 0.0
    wink_open_min: float = 0.9
    wink_closed_max: float = 0.1
    # Per-person baseline: each eye's own open level, a running upper envelope of its logit (rising with
    # time constant `open_level_rise_ms`, falling with `open_level_fall_ms`, so blinks barely move it),
    # bounded to [open_level_min, open_level_max]. Every reading is judged relative to it: its logit is
    # shifted so that the eye's open level sits at `open_level_ref` before the thresholds above apply.
    # 0 turns this off (absolute prob_open).
    open_level_ref: float = 6.0
    open_level_rise_ms: float = 100.0
    open_level_fall_ms: float = 5000.0
    open_level_min: float = 2.0
    open_level_max: float = 7.5
    # Until an eye's own level exists it is judged against a population prior: a new track's level starts at
    # `open_level_prior` (or at its first reading, if higher), and a closure already in progress when the track
    # starts counts, instead of the eye having to be seen open first. 0 turns this off (the first reading is the
    # level, and an eye must be seen open before it can close).
    open_level_prior: float = 0.0
    # Drowsiness levels (drowsiness.py explains the rules and the literature behind the defaults).
    drowsy_perclos: float = 0.15
    asleep_perclos: float = 0.30
    drowsy_blink_ms: float = 400.0
    asleep_closure_ms: float = 3000.0
    recovery_s: float = 10.0
    closure_alerts_s: tuple[float, ...] = (3.0, 5.0, 11.0)

    @classmethod
    def independent_readings(cls, **overrides: float) -> EngineConfig:
        """For readings whose errors are independent between observations: 50 ms smoothing, 0.2 / 0.5, and an
        open level bounded to 6.5. Measured on `evaluate-events` timelines of independent MRL crops: BLINK
        precision / recall 0.960 / 0.990 on the test people, 0.971 / 0.971 on the validation people (the webcam
        defaults: 0.45 / 1.0 on the test people, whose worst subject reads 20 % of open crops as closed)."""
        preset: dict[str, Any] = {"smooth_ms": 50.0, "closed_below": 0.2, "open_above": 0.5, "open_level_max": 6.5}
        return cls(**{**preset, **overrides})

    def __post_init__(self) -> None:
        if not 0.0 <= self.closed_below < self.open_above <= 1.0:
            raise ValueError(f"need 0 <= closed_below < open_above <= 1 (got {self.closed_below}, {self.open_above})")
        if not 0 <= self.blink_min_ms <= self.blink_max_ms:
            raise ValueError("need 0 <= blink_min_ms <= blink_max_ms")
        if self.smooth_ms < 0:
            raise ValueError("smooth_ms must be >= 0 (0: no smoothing)")
        if self.long_closure_ms <= 0 or self.max_gap_ms <= 0 or self.window_s <= 0:
            raise ValueError("long_closure_ms, max_gap_ms and window_s must be > 0")
        if self.open_level_rise_ms <= 0 or self.open_level_fall_ms <= 0:
            raise ValueError("open_level_rise_ms and open_level_fall_ms must be > 0")
        if not self.open_level_min <= self.open_level_max:
            raise ValueError("need open_level_min <= open_level_max")
        if self.open_level_prior < 0:
            raise ValueError("open_level_prior must be >= 0 (0: off)")
        if not 0.0 < self.drowsy_perclos <= self.asleep_perclos <= 1.0:
            raise ValueError("need 0 < drowsy_perclos <= asleep_perclos <= 1")
        if self.drowsy_blink_ms <= 0 or self.asleep_closure_ms <= 0 or self.recovery_s < 0:
            raise ValueError("drowsy_blink_ms and asleep_closure_ms must be > 0, recovery_s >= 0")
        if any(b <= a for a, b in zip(self.closure_alerts_s, self.closure_alerts_s[1:], strict=False)) or any(
            s <= 0 for s in self.closure_alerts_s
        ):
            raise ValueError(f"closure_alerts_s must be positive and increasing (got {self.closure_alerts_s})")
        for name in ("partner_dip_below", "wink_open_min", "wink_closed_max"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (got {getattr(self, name)})")


@dataclass(frozen=True)
class Observation:
    timestamp_us: int
    left: float | None = None  # prob_open of the subject's left eye; None: not visible
    right: float | None = None
    track_lost: bool = False


@dataclass(frozen=True)
class Event:
    type: EventType
    phase: Phase
    start_us: int
    end_us: int
    min_prob_open: float
    truncated: bool = False
    level: Level = Level.UNSPECIFIED  # DROWSINESS: the level now
    escalation: int = 0  # DROWSINESS: k >= 1 for the kth sustained-closure alert, 0 for a level change

    @property
    def duration_ms(self) -> float:
        return (self.end_us - self.start_us) / 1000.0

    def key(self, stream_id: str, track_id: int) -> str:
        """Identifies the event across re-emissions (an aggregator replaying observations after a crash)."""
        key = f"{stream_id}/{track_id}/{self.type.name}/{self.phase.name}/{self.start_us}"
        if self.type == EventType.DROWSINESS:  # a level change and an escalation may share a frame
            key += f"/{self.level.name}/{self.escalation}"
        return key


@dataclass(frozen=True)
class Episode:
    start_us: int
    closed: tuple[bool, bool]  # (left, right) ever closed during the episode
    other_open_at_start: bool  # the eye that did not close first was OPEN when the episode began
    both_since_us: int | None  # both eyes closed since then (None: not both closed now)
    both_ever: bool
    min_prob_open: float
    long_started: bool = False
    # Per eye, the lowest reading of the episode as judged (relative to its open level), and whether some
    # observation lacked an eye.
    min_probs: tuple[float, float] = (1.0, 1.0)
    eye_missing: bool = False


@dataclass(frozen=True)
class TrackState:
    eyes: tuple[str, str] = (UNKNOWN, UNKNOWN)  # (left, right)
    recent: tuple[tuple[tuple[int, float], ...], ...] = ((), ())  # per eye (timestamp, prob) inside smooth_ms
    last_us: int | None = None
    last_known_us: int | None = None  # the last observation with a reading of either eye (not both UNKNOWN)
    last_kind: str = ""  # window statistics class of the last observation: open / closed80 / other
    episode: Episode | None = None
    segments: tuple[tuple[int, int, str], ...] = ()  # (start, end, kind), merged; those ending in the window
    blinks: tuple[tuple[int, float], ...] = ()  # (end_us, duration_ms) within the window
    last_event: Event | None = None
    observations: int = 0
    events: int = field(default=0)
    open_level: tuple[float | None, float | None] = (None, None)  # per eye, logit (see EngineConfig)
    level: Level = Level.UNSPECIFIED  # drowsiness
    below_since_us: int | None = None  # the evidence has pointed below `level` since then
    closure_alerts: int = 0  # sustained-closure alerts emitted during the current closure

    def to_json(self) -> str:
        return json.dumps(_plain(self), separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> TrackState:
        """The state `to_json` wrote, fields decoded as the dataclasses declare them; a field an older version did
        not write takes its default."""
        raw = json.loads(text)
        raw.setdefault("last_known_us", raw.get("last_us"))  # written since 2026-10; until then the last reading
        return _decoder(TrackState)(raw)


def _plain(value: Any) -> Any:
    """A dataclass as a dict of its fields, nested ones too (tuples and enums go to JSON as they are)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


@cache
def _decoder(hint: Any) -> Callable[[Any], Any]:
    """A function that turns a JSON value into the type `hint` declares: tuples (fixed or `...`, nested),
    optional values, dataclasses (missing fields take their defaults), enums. Built once per type."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        inner = [a for a in args if a is not type(None)]
        one = _decoder(inner[0]) if len(inner) == 1 else (lambda v: v)
        return lambda v: None if v is None else one(v)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _decoder(args[0])
        return lambda v: tuple(item(x) for x in v)
    if origin is tuple:
        items = [_decoder(a) for a in args]
        return lambda v: tuple(d(x) for d, x in zip(items, v, strict=True))
    if isinstance(hint, type) and is_dataclass(hint):
        hints = get_type_hints(hint)
        decoders = {f.name: _decoder(hints[f.name]) for f in fields(hint)}
        return lambda v: hint(**{name: decoders[name](x) for name, x in v.items() if name in decoders})
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    return lambda v: v
