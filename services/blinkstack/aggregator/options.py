"""The aggregator's flags, each with its literal BLINKSTACK_* environment name, the engine settings, and the
options built from them once (`from_args`): the server code takes `AggregatorOptions`, never the parsed flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from blinkstack.aggregator import engine
from blinkstack.aggregator.store import MAX_EVENT_SHARDS, StoreSettings
from blinkstack.common.config import env_option, from_flags, parse_bool
from blinkstack.common.grpc_server import ServerSettings, add_server_options, settings_from_args
from blinkstack.common.security import ClientSecurity, add_client_security_options, client_security
from blinkstack.services import AGGREGATOR, DETECTOR, EYESTATE

# The blink engine's settings: EngineConfig field, environment name, help. Defaults are EngineConfig's.
ENGINE_OPTIONS = (
    ("closed_below", "BLINKSTACK_CLOSED_BELOW", "an eye turns CLOSED at or below this prob_open"),
    ("open_above", "BLINKSTACK_OPEN_ABOVE", "and OPEN again at or above this one"),
    ("smooth_ms", "BLINKSTACK_SMOOTH_MS", "prob_open is averaged over this window before the thresholds (0: off)"),
    ("blink_min_ms", "BLINKSTACK_BLINK_MIN_MS", "shortest blink/wink"),
    ("blink_max_ms", "BLINKSTACK_BLINK_MAX_MS", "longest blink"),
    ("wink_max_ms", "BLINKSTACK_WINK_MAX_MS", "longest wink"),
    ("long_closure_ms", "BLINKSTACK_LONG_CLOSURE_MS", "closure length that makes a LONG_CLOSURE"),
    ("max_gap_ms", "BLINKSTACK_MAX_GAP_MS", "longer gaps between observations end an episode without an event"),
    ("window_s", "BLINKSTACK_WINDOW_S", "statistics window"),
    (
        "perclos_prob_open",
        "BLINKSTACK_PERCLOS_PROB_OPEN",
        "mean prob_open at or below which eyes count as >= 80 % closed (PERCLOS)",
    ),
    ("partner_dip_below", "BLINKSTACK_PARTNER_DIP_BELOW", "one eye closed while the other dipped this low is a BLINK"),
    ("wink_open_min", "BLINKSTACK_WINK_OPEN_MIN", "a WINK's open eye never reads below this"),
    ("wink_closed_max", "BLINKSTACK_WINK_CLOSED_MAX", "a WINK's closed eye reads this or lower"),
    (
        "open_level_ref",
        "BLINKSTACK_OPEN_LEVEL_REF",
        "logit each eye's own open level is mapped to (0: absolute prob_open)",
    ),
    ("open_level_rise_ms", "BLINKSTACK_OPEN_LEVEL_RISE_MS", "time constant of the open level rising"),
    ("open_level_fall_ms", "BLINKSTACK_OPEN_LEVEL_FALL_MS", "time constant of the open level falling"),
    ("open_level_min", "BLINKSTACK_OPEN_LEVEL_MIN", "lowest open level (logit)"),
    ("open_level_max", "BLINKSTACK_OPEN_LEVEL_MAX", "highest open level (logit)"),
    (
        "open_level_prior",
        "BLINKSTACK_OPEN_LEVEL_PRIOR",
        "a new track's open level (logit) until its own: closures in progress at its start count (0: off)",
    ),
    ("drowsy_perclos", "BLINKSTACK_DROWSY_PERCLOS", "PERCLOS over the window at or above which a track is DROWSY"),
    ("asleep_perclos", "BLINKSTACK_ASLEEP_PERCLOS", "PERCLOS over the window at or above which a track is ASLEEP"),
    (
        "drowsy_blink_ms",
        "BLINKSTACK_DROWSY_BLINK_MS",
        "mean blink duration over the window (3 blinks or more) at or above which a track is DROWSY",
    ),
    ("asleep_closure_ms", "BLINKSTACK_ASLEEP_CLOSURE_MS", "both eyes closed this long: ASLEEP"),
    ("recovery_s", "BLINKSTACK_DROWSY_RECOVERY_S", "a level falls after the evidence stayed below it this long"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser, AGGREGATOR)
    group = parser.add_argument_group("aggregator")
    env_option(group, "--redis-url", "BLINKSTACK_REDIS_URL", "redis://127.0.0.1:6379/0", help="Redis server")
    env_option(group, "--redis-prefix", "BLINKSTACK_REDIS_PREFIX", "blinkstack", help="prefix of every Redis key")
    env_option(group, "--redis-retry-s", "BLINKSTACK_REDIS_RETRY_S", 30.0, float, help="how long writes wait for Redis")
    env_option(
        group,
        "--redis-cluster",
        "BLINKSTACK_REDIS_CLUSTER",
        False,
        parse_bool,
        help="the URL names one node of a Redis Cluster (redis-py's cluster client finds the others)",
    )
    env_option(
        group,
        "--event-shards",
        "BLINKSTACK_EVENT_SHARDS",
        1,
        int,
        help="event streams the cameras are spread over (a Redis Cluster spreads them over its masters); "
        "every aggregator of a deployment must use the same number",
        at_least=1,
        below=MAX_EVENT_SHARDS + 1,
    )
    env_option(group, "--events-maxlen", "BLINKSTACK_EVENTS_MAXLEN", 100_000, int, help="events kept per event shard")
    env_option(
        group,
        "--stream-events-maxlen",
        "BLINKSTACK_STREAM_EVENTS_MAXLEN",
        10_000,
        int,
        help="events kept per camera stream",
    )
    env_option(
        group,
        "--events-max-age-s",
        "BLINKSTACK_EVENTS_MAX_AGE_S",
        0.0,
        float,
        help="also drop events older than this (MINID; 0: keep by count only)",
    )
    _add_limits_and_frames(parser, group)


def _add_limits_and_frames(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> None:
    """Subscribers, key expiry, TrackFrames' downstream services, and the blink engine's settings."""
    env_option(
        group,
        "--max-subscribers",
        "BLINKSTACK_MAX_SUBSCRIBERS",
        2000,
        int,
        help="SubscribeBlinks calls at once (apart from --max-concurrent-rpcs; 0: no limit)",
    )
    env_option(
        group,
        "--subscriber-buffer",
        "BLINKSTACK_SUBSCRIBER_BUFFER",
        4096,
        int,
        help="events a subscriber may fall behind before it is dropped (RESOURCE_EXHAUSTED, with the id to resume)",
    )
    env_option(
        group,
        "--key-ttl-s",
        "BLINKSTACK_KEY_TTL_S",
        7 * 24 * 3600.0,
        float,
        help="per-stream and per-track keys expire after this long without a write (0: never)",
    )
    env_option(
        group,
        "--max-tracks-per-stream",
        "BLINKSTACK_MAX_TRACKS_PER_STREAM",
        10_000,
        int,
        help="tracks one stream may hold in Redis (each ~0.8 kB); a new track beyond gets RESOURCE_EXHAUSTED. A "
        "track leaves the count --key-ttl-s after it first appeared (0: no limit)",
    )
    env_option(
        group,
        "--detector-addr",
        DETECTOR.address_env,
        DETECTOR.default_address(),
        help="detector service (TrackFrames)",
    )
    env_option(
        group,
        "--eyestate-addr",
        EYESTATE.address_env,
        EYESTATE.default_address(),
        help="eye-state service (TrackFrames)",
    )
    add_client_security_options(parser.add_argument_group("downstream TLS (detector and eye-state)"))
    env_option(
        group,
        "--max-seq-jump",
        "BLINKSTACK_MAX_SEQ_JUMP",
        1_000_000,
        int,
        help="a frame whose seq lies further ahead of its run's last seq is refused (INVALID_ARGUMENT): one stray "
        "seq would otherwise make the stream's next frames duplicates; 1e6 frames is 9 hours at 30 frames/s",
    )
    defaults = engine.EngineConfig()
    for name, env, help_text in ENGINE_OPTIONS:
        env_option(group, "--" + name.replace("_", "-"), env, getattr(defaults, name), float, help=help_text)
    env_option(
        group,
        "--closure-alerts-s",
        "BLINKSTACK_CLOSURE_ALERTS_S",
        defaults.closure_alerts_s,
        seconds_list,
        help="DROWSINESS escalations while both eyes stay closed, in seconds (comma-separated)",
    )


def seconds_list(text: str | tuple[float, ...]) -> tuple[float, ...]:
    """ "3,5,11" -> (3.0, 5.0, 11.0)."""
    if isinstance(text, tuple):
        return text
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of seconds: {text!r}") from None


def engine_config(args: argparse.Namespace) -> engine.EngineConfig:
    """The engine settings from parsed flags; EngineConfig checks the limits."""
    values = {name: getattr(args, name) for name, _, _ in ENGINE_OPTIONS}
    return engine.EngineConfig(**values, closure_alerts_s=args.closure_alerts_s)


@dataclass(frozen=True)
class AggregatorOptions:
    server: ServerSettings
    downstream_security: ClientSecurity  # how TrackFrames reaches the detector and eye-state service
    engine: engine.EngineConfig
    store: StoreSettings
    max_subscribers: int
    subscriber_buffer: int
    detector_addr: str
    eyestate_addr: str
    max_seq_jump: int


def from_args(args: argparse.Namespace) -> AggregatorOptions:
    """The options, with the engine's limits and the TLS and token files checked now (a ValueError says what)."""
    return from_flags(
        AggregatorOptions,
        args,
        server=settings_from_args(args),
        downstream_security=client_security(args),
        engine=engine_config(args),
        store=from_flags(StoreSettings, args),
    )
