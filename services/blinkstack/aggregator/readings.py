"""Per-eye readings before the thresholds: relative to the eye's own open level, optionally smoothed.

Why relative: each person's (and camera's) typical open-eye confidence differs; a running upper envelope of
the logit per eye is the reference, bounded so a confident eye cannot make a mild dip count as closed.
"""

from __future__ import annotations

import math
from dataclasses import replace

from blinkstack.aggregator.track_state import EngineConfig, Observation

LOGIT_LIMIT = 1e-4  # prob_open is clipped to [1e-4, 1 - 1e-4] (logit +-9.2) before it is made relative


def relative(
    levels: tuple[float | None, float | None], obs: Observation, dt_ms: float | None, config: EngineConfig
) -> tuple[tuple[float | None, float | None], Observation]:
    """Update each eye's open level with this reading; the observation with readings relative to it."""
    if not config.open_level_ref:
        return levels, obs
    new_levels = []
    for level, prob in zip(levels, (obs.left, obs.right), strict=True):
        if prob is not None:
            z = logit(prob)
            if level is None:
                # A new eye: the population prior until a higher (open) reading lifts it.
                level = max(z, config.open_level_prior) if config.open_level_prior else z
            elif dt_ms is None:
                level = z
            else:
                tau = config.open_level_rise_ms if z > level else config.open_level_fall_ms
                level += (1.0 - math.exp(-dt_ms / tau)) * (z - level)
        new_levels.append(level)
    levels = (new_levels[0], new_levels[1])
    left, right = relative_probs(levels, obs.left, obs.right, config)
    return levels, replace(obs, left=left, right=right)


def logit(prob: float) -> float:
    p = min(max(prob, LOGIT_LIMIT), 1.0 - LOGIT_LIMIT)
    return math.log(p / (1.0 - p))


def relative_probs(
    levels: tuple[float | None, float | None], left: float | None, right: float | None, config: EngineConfig
) -> tuple[float | None, float | None]:
    """prob_open per eye relative to that eye's open level (what the thresholds judge); as given when off."""
    if not config.open_level_ref:
        return left, right
    result = []
    for level, prob in zip(levels, (left, right), strict=True):
        if prob is None or level is None:
            result.append(prob)
            continue
        bounded = min(max(level, config.open_level_min), config.open_level_max)
        result.append(1.0 / (1.0 + math.exp(-(logit(prob) - bounded + config.open_level_ref))))
    return result[0], result[1]


def smooth(
    recent: tuple[tuple[tuple[int, float], ...], ...], obs: Observation, config: EngineConfig
) -> tuple[tuple[tuple[tuple[int, float], ...], ...], tuple[float | None, float | None]]:
    """Per eye: the readings within `smooth_ms` (this one included) and their mean (None: no reading now)."""
    horizon = obs.timestamp_us - config.smooth_ms * 1000.0
    kept, means = [], []
    for history, prob in zip(recent, (obs.left, obs.right), strict=True):
        window = tuple(r for r in history if r[0] > horizon)
        if prob is not None:
            window = (*window, (obs.timestamp_us, prob))
        kept.append(window)
        means.append(sum(p for _, p in window) / len(window) if prob is not None else None)
    return tuple(kept), (means[0], means[1])
