"""Event accuracy on timelines built from real labelled eye crops, run through the real eye-state model.

For every MRL test subject (people the model never saw; `split="val"` for the validation subjects, on which the
engine's defaults were chosen), a 60 s timeline at 30 frames/s: the subject's open-eye
crops, with blinks of 100-400 ms every 2-6 s where both eyes show that subject's closed-eye crops, and, in
every second timeline, one long closure of 1-2 s. Each frame draws a fresh crop per eye, the committed model
classifies every crop, the blink engine turns the probabilities into events, and `scoring.score` compares them
with the known blink and closure times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from blinkstack.aggregator.engine import EngineConfig, Observation, Phase, TrackState, step
from blinkstack.common.model_repository import EYE_STATE_MODEL, resolve_model_file
from blinkstack.common.onnx_runtime import create_session, run_prob_open
from blinkstack.common.preprocess import preprocess_encoded
from blinkstack.tools.scoring import Span, score
from blinkstack_train import data

FPS = 30.0
SECONDS = 60.0


@dataclass
class Timeline:
    subject: str
    timestamps_us: np.ndarray
    closed: np.ndarray  # bool per frame (truth)
    truth: list[Span]
    left: np.ndarray  # prob_open per frame
    right: np.ndarray


def _truth_plan(
    rng: np.random.Generator, frames: int, long_closure: bool
) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Closed-frame mask and (type, first closed frame, first open frame after) for each episode."""
    closed = np.zeros(frames, dtype=bool)
    episodes = []
    t = int(rng.uniform(1, 3) * FPS)
    long_at = int(rng.uniform(0.3, 0.7) * frames) if long_closure else -1
    while t < frames - 2 * FPS:
        if long_at >= 0 and t >= long_at:
            length, kind, long_at = int(rng.uniform(1.0, 2.0) * FPS), "LONG_CLOSURE", -1
        else:
            length, kind = max(3, round(rng.uniform(0.1, 0.4) * FPS)), "BLINK"
        closed[t : t + length] = True
        episodes.append((kind, t, t + length))
        t += length + int(rng.uniform(2, 6) * FPS)
    return closed, episodes


def _draw(rng: np.random.Generator, pools: dict[int, np.ndarray], closed: np.ndarray) -> np.ndarray:
    """prob_open per frame: the model's answer for a random crop of the frame's true class (one per eye)."""
    probs = np.empty(len(closed), dtype=np.float32)
    probs[closed] = rng.choice(pools[0], closed.sum())
    probs[~closed] = rng.choice(pools[1], (~closed).sum())
    return probs


def build_timelines(prepared: pd.DataFrame, repository: Path, seed: int = 0, split: str = "test") -> list[Timeline]:
    session = create_session(resolve_model_file(Path(repository) / EYE_STATE_MODEL)[0])
    rng = np.random.default_rng(seed)
    test = prepared[(prepared["split"] == split) & (prepared["dataset"] == "mrl")]
    timelines = []
    for index, (subject, rows) in enumerate(sorted(test.groupby("person"), key=lambda item: item[0])):
        pools = {}
        for class_id in (0, 1):  # 0 closed, 1 open
            blobs = rows[rows["class_id"] == class_id]["image_png"].tolist()
            pools[class_id] = run_prob_open(session, preprocess_encoded(blobs))
        frames = int(SECONDS * FPS)
        closed, episodes = _truth_plan(rng, frames, long_closure=index % 2 == 1)
        timestamps = (1_000_000 + np.arange(frames) * 1e6 / FPS).round().astype(np.int64)

        truth = [Span(kind, int(timestamps[a]), int(timestamps[b])) for kind, a, b in episodes]
        timelines.append(
            Timeline(subject, timestamps, closed, truth, _draw(rng, pools, closed), _draw(rng, pools, closed))
        )
    return timelines


def detect(timeline: Timeline, config: EngineConfig) -> list[Span]:
    state, spans = TrackState(), []
    for t, left, right in zip(timeline.timestamps_us, timeline.left, timeline.right, strict=True):
        state, events = step(state, Observation(int(t), float(left), float(right)), config)
        spans += [Span(e.type.name, e.start_us, e.end_us) for e in events if e.phase == Phase.ENDED]
    return spans


def evaluate_events(
    repository: Path,
    data_dir: Path = data.DEFAULT_DATA_DIR,
    config: EngineConfig | None = None,
    seed: int = 0,
    split: str = "test",
) -> dict:
    config = config or EngineConfig.independent_readings()
    prepared, _ = data.prepare(data_dir)
    timelines = build_timelines(prepared, repository, seed, split)
    detected = {t.subject: detect(t, config) for t in timelines}
    all_detected = [s for spans in detected.values() for s in spans]
    all_truth = [s for t in timelines for s in t.truth]
    return {
        "split": split,
        "timelines": len(timelines),
        "seconds_each": SECONDS,
        "fps": FPS,
        "overall": score(all_detected, all_truth),
        "per_subject": {t.subject: score(detected[t.subject], t.truth) for t in timelines},
        "long_closures_where_none_was_made": sum(
            1
            for t in timelines
            if not any(s.type == "LONG_CLOSURE" for s in t.truth)
            for s in detected[t.subject]
            if s.type == "LONG_CLOSURE"
        ),
        "_timelines": timelines,
        "_detected": detected,
    }


def write_report(report: dict, out_dir: Path, config: EngineConfig | None = None) -> None:
    """events_eval.json, and timeline.png: prob_open of the first long-closure timeline with truth and events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = config or EngineConfig.independent_readings()
    out_dir.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    (out_dir / "events_eval.json").write_text(json.dumps(public, indent=2) + "\n")
    timeline = next(t for t in report["_timelines"] if any(s.type == "LONG_CLOSURE" for s in t.truth))
    seconds = (timeline.timestamps_us - timeline.timestamps_us[0]) / 1e6
    origin = timeline.timestamps_us[0]
    fig, ax = plt.subplots(figsize=(14, 4))
    ax.plot(seconds, timeline.left, lw=0.6, label="left eye prob_open")
    ax.plot(seconds, timeline.right, lw=0.6, label="right eye prob_open", alpha=0.7)
    for level, name in ((config.closed_below, "closed below"), (config.open_above, "open above")):
        ax.axhline(level, color="grey", ls=":", lw=1)
        ax.text(seconds[-1], level, f" {name} {level}", va="center", fontsize=8)
    for span in timeline.truth:
        ax.axvspan((span.start_us - origin) / 1e6, (span.end_us - origin) / 1e6, ymin=0.9, ymax=1.0, color="green")
    colours = {"BLINK": "tab:blue", "LONG_CLOSURE": "tab:red", "WINK_LEFT": "tab:orange", "WINK_RIGHT": "tab:orange"}
    for span in report["_detected"][timeline.subject]:
        start, end = (span.start_us - origin) / 1e6, (span.end_us - origin) / 1e6
        ax.axvspan(start, end, ymin=0.0, ymax=0.1, color=colours[span.type])
    ax.set_xlabel("seconds")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{timeline.subject}: truth (green, top) vs detected events (bottom; blue BLINK, red LONG_CLOSURE)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "timeline.png", dpi=110)
    plt.close(fig)
