"""What `blinkstack watch` writes after a run: summary.json, events.json and timeline.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from blinkstack.aggregator import event_forms
from blinkstack.tools.watch import WatchResult
from blinkstack.v1 import aggregator_pb2


def summarize(result: WatchResult, perclos_prob_open: float = 0.2) -> dict:
    frames = result.frames
    faced = [f for f in frames if f.faces]
    names = [event_forms.type_name(e) for e in result.events if e.phase == aggregator_pb2.EVENT_PHASE_ENDED]
    minutes = (frames[-1].timestamp_us - frames[0].timestamp_us) / 60e6 if len(frames) > 1 else 0.0
    closed80 = [((f.left or 0) + (f.right or 0)) / 2 <= perclos_prob_open for f in faced]
    opened = [(f.left or 0) >= 0.5 and (f.right or 0) >= 0.5 for f in faced]

    def stage(values: list[float]) -> dict:
        array = np.array(values, dtype=float) if values else np.zeros(1)
        return {
            "mean_ms": float(array.mean()),
            "p50_ms": float(np.percentile(array, 50)),
            "p99_ms": float(np.percentile(array, 99)),
        }

    return {
        "stream_id": result.stream_id,
        "frames": len(frames),
        "frames_processed": sum(f.status == aggregator_pb2.FRAME_STATUS_PROCESSED for f in frames),
        "frames_with_one_face": sum(f.faces == 1 for f in frames),
        "faces": sum(f.faces for f in frames),
        "tracks": sorted({t for f in frames for t in f.track_ids}),
        "blinks": names.count("BLINK"),
        "winks_left": names.count("WINK_LEFT"),
        "winks_right": names.count("WINK_RIGHT"),
        "long_closures": names.count("LONG_CLOSURE"),
        "drowsiness_alerts": sum(e.type == aggregator_pb2.EVENT_TYPE_DROWSINESS for e in result.events),
        "eyes_unknown_share": float(np.mean([f.unknown for f in faced]) / 2) if faced else 0.0,
        "blinks_per_minute": names.count("BLINK") / minutes if minutes else 0.0,
        "perclos": float(np.mean(closed80)) if closed80 else 0.0,
        "both_eyes_open_share": float(np.mean(opened)) if opened else 0.0,
        "video_seconds": minutes * 60,
        "wall_seconds": result.elapsed_s,
        "frames_per_s": len(frames) / result.elapsed_s if result.elapsed_s else 0.0,
        "timings": {
            "detect": stage([f.detect_us / 1000 for f in frames]),
            "classify": stage([f.classify_us / 1000 for f in frames]),
            "aggregate": stage([f.aggregate_us / 1000 for f in frames]),
            "end_to_end": stage([f.latency_s * 1000 for f in frames]),
        },
    }


def plot_timeline(result: WatchResult, path: Path, closed_below: float = 0.2, open_above: float = 0.5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faced = [f for f in result.frames if f.faces]
    seconds = np.array([f.timestamp_us for f in faced]) / 1e6
    fig, ax = plt.subplots(figsize=(14, 4))
    ax.plot(
        seconds, np.array([f.left for f in faced], dtype=float), lw=0.7, label="left eye prob_open (subject's left)"
    )
    ax.plot(seconds, np.array([f.right for f in faced], dtype=float), lw=0.7, alpha=0.7, label="right eye prob_open")
    for level, name in ((closed_below, "closed below"), (open_above, "open above")):
        ax.axhline(level, color="grey", ls=":", lw=1)
        ax.text(seconds[0] if len(seconds) else 0, level, f"{name} {level} ", va="bottom", fontsize=8, color="grey")
    colours = {"BLINK": "tab:blue", "WINK_LEFT": "tab:orange", "WINK_RIGHT": "tab:purple", "LONG_CLOSURE": "tab:red"}
    seen: set[str] = set()
    for event in result.events:
        if event.phase != aggregator_pb2.EVENT_PHASE_ENDED:
            continue
        name = event_forms.type_name(event)
        ax.axvspan(event.start_us / 1e6, event.end_us / 1e6, color=colours.get(name, "black"), alpha=0.3,
                   label=name if name not in seen else None)  # fmt: skip
        seen.add(name)
    apertures = [(t, f.left_aperture, f.right_aperture) for t, f in zip(seconds, faced, strict=True)]
    if any(left is not None for _, left, _ in apertures):
        lids = ax.twinx()  # the landmark model's lid aperture, on its own scale
        times = [t for t, _, _ in apertures]
        lids.plot(times, [np.nan if a is None else a for _, a, _ in apertures], lw=0.6, color="tab:green",
                  label="left eye lid aperture")  # fmt: skip
        lids.plot(times, [np.nan if a is None else a for _, _, a in apertures], lw=0.6, color="tab:olive",
                  alpha=0.8, label="right eye lid aperture")  # fmt: skip
        lids.set_ylabel("lid aperture (lid distance / eye width)")
        lids.set_ylim(0, 0.6)
        lids.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("video time (s)")
    ax.set_ylabel("prob_open")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{result.stream_id}: eye state and events")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: WatchResult, out_dir: Path) -> dict:
    """summary.json, events.json and timeline.png (annotated.mp4 is written while watching)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "events.json").write_text(json.dumps([event_forms.to_json(e) for e in result.events], indent=2) + "\n")
    plot_timeline(result, out_dir / "timeline.png")
    return summary


def write_json(path: Path | None, data: object) -> None:
    """`data` as indented JSON at `path` (its folder made), for the benchmarks' `--json`; None: nothing."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
