"""Blink detection on real webcam clips, through the real stack: `blinkstack-train evaluate-video`.

Each clip of a ZJU-format folder is streamed through `TrackFrames` (one stream per clip, JPEG frames, the
clip's own 30 fps timestamps) to a stack started as `blinkstack up` starts it (Redis and three service
processes on loopback), or to a running one (`--target`). What comes back is scored by the data card's rule
(`training.zju`): BLINK precision/recall/F1 overall, per condition and per subject; WINK and LONG_CLOSURE
events (all false in these clips); per-frame agreement of the annotated subject's eye states with the
annotation (both eyes closed; both open outside blinks); and streams that failed.

Cross-validation by person (`--cv-models A.onnx B.onnx ...`): the subjects are dealt into as many folds as
models, and fold i is run on a stack serving model i, so every figure comes from people that model never
saw when model i was trained without fold i (`blinkstack-train train --video-holdout`).

The Eyeblink8 windows video joins with its own expectations: one face per frame, no LONG_CLOSURE, no WINK,
and BLINKs at its two certain blinks (18.4 s and 37.2 s).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from blinkstack.aggregator import events
from blinkstack.local.stack import Stack, StackConfig
from blinkstack.tools.reports import write_outputs
from blinkstack.tools.watch import watch
from blinkstack.v1 import aggregator_pb2, types_pb2
from blinkstack_train import zju

EYEBLINK8_BLINKS_S = (18.4, 37.2)
Progress = Callable[..., Iterable]  # tqdm, or anything that wraps an iterable the same way
EYEBLINK8_TOLERANCE_S = 0.5
CLOSED = types_pb2.EYE_STATE_CLOSED
OPEN = types_pb2.EYE_STATE_OPEN


@dataclass
class ClipRun:
    """What the stack answered for one clip."""

    clip: str
    subject: int
    condition: str
    fps: float
    # Per frame: [(track_id, prob_left, prob_right, state_left, state_right), ...] for every face.
    faces: list[list[tuple[int, float, float, int, int]]] = field(default_factory=list)
    # (type name, phase name, track_id, start frame, end frame)
    events: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    error: str = ""

    def main_track(self) -> int | None:
        """The annotated subject: the track seen in most frames."""
        counts = Counter(face[0] for frame in self.faces for face in frame)
        return counts.most_common(1)[0][0] if counts else None


def run_clip(clip: zju.Clip, target: str, stream_id: str) -> ClipRun:
    run = ClipRun(clip.name, clip.subject, clip.condition, 30.0)

    def on_result(result: aggregator_pb2.FrameResult) -> None:
        run.faces.append(
            [
                (f.track_id, f.left_eye.prob_open, f.right_eye.prob_open, f.left_eye.state, f.right_eye.state)
                for f in result.faces
            ]
        )

    watched = watch(str(clip.video), target, stream_id, on_result=on_result, progress=False)
    run.fps, run.error = watched.fps_source, watched.error
    for e in watched.events:
        phase = "STARTED" if e.phase == aggregator_pb2.EVENT_PHASE_STARTED else "ENDED"
        frames = (round(e.start_us * run.fps / 1e6), round(e.end_us * run.fps / 1e6))
        run.events.append((events.type_name(e), phase, e.track_id, *frames))
    return run


def frame_agreement(clip: zju.Clip, run: ClipRun) -> dict[str, int]:
    """Frames with both eyes annotated closed / open (outside blinks), and how many the stack got right."""
    track = run.main_track()
    counts = {"closed_frames": 0, "closed_agree": 0, "open_frames": 0, "open_agree": 0}
    for i in range(min(clip.annotated_frames, len(run.faces))):
        if clip.not_visible["le"][i] or clip.not_visible["re"][i]:
            continue
        closed = clip.closed["le"][i] and clip.closed["re"][i]
        opened = not (clip.closed["le"][i] or clip.closed["re"][i] or clip.in_blink[i])
        if not (closed or opened):
            continue
        states = next(((f[3], f[4]) for f in run.faces[i] if f[0] == track), None)
        want = CLOSED if closed else OPEN
        key = "closed" if closed else "open"
        counts[f"{key}_frames"] += 1
        counts[f"{key}_agree"] += states == (want, want)
    return counts


def score_runs(clips: list[zju.Clip], runs: list[ClipRun]) -> dict:
    by_name = {c.name: c for c in clips}
    total = zju.Match()
    by_condition: defaultdict[str, zju.Match] = defaultdict(zju.Match)
    by_subject: defaultdict[int, zju.Match] = defaultdict(zju.Match)
    agreement: Counter = Counter()
    false_events: Counter = Counter()
    per_clip = {}
    for run in runs:
        clip = by_name[run.clip]
        detected = [(a, b) for name, phase, _, a, b in run.events if name == "BLINK" and phase == "ENDED"]
        match = zju.match_blinks(detected, clip.blinks, clip.annotated_frames)
        total = total + match
        by_condition[clip.condition] += match
        by_subject[clip.subject] += match
        counts = frame_agreement(clip, run)
        agreement.update(counts)
        # Every WINK and LONG_CLOSURE is false here; a long closure counts once, at its STARTED event.
        false_here = Counter(
            name
            for name, phase, *_ in run.events
            if (name.startswith("WINK") and phase == "ENDED") or (name == "LONG_CLOSURE" and phase == "STARTED")
        )
        false_events.update(false_here)
        per_clip[run.clip] = {**zju.prf(match), "false_events": dict(false_here), "error": run.error, **counts}
    return {
        "blink": zju.prf(total),
        "blink_by_condition": {zju.CONDITIONS[k]: zju.prf(v) for k, v in sorted(by_condition.items())},
        "blink_by_subject": {str(k): zju.prf(v) for k, v in sorted(by_subject.items())},
        "false_winks": false_events["WINK_LEFT"] + false_events["WINK_RIGHT"],
        "false_long_closures": false_events["LONG_CLOSURE"],
        "both_closed_agreement": _ratio(agreement["closed_agree"], agreement["closed_frames"]),
        "both_open_agreement": _ratio(agreement["open_agree"], agreement["open_frames"]),
        "frames": dict(agreement),
        "failed_streams": {r.clip: r.error for r in runs if r.error},
        "clips": per_clip,
    }


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 4) if denominator else float("nan")


def model_repository_with(eye_model: Path, base: Path, into: Path) -> Path:
    """A copy of the model repository `base` whose eye_state version 1 is `eye_model` (for a stack to serve)."""
    repository = into / "model_repository"
    shutil.copytree(base, repository)
    versions = [p for p in (repository / "eye_state").iterdir() if p.is_dir() and p.name.isdigit()]
    for version in versions:
        shutil.rmtree(version)
    (repository / "eye_state" / "1").mkdir()
    shutil.copy(eye_model, repository / "eye_state" / "1" / "model.onnx")
    return repository


def local_stack(repository: Path, data_dir: Path) -> Stack:
    """A stack on free loopback ports, serving `repository`, configured as `blinkstack up` does."""
    repository_env = {"BLINKSTACK_MODEL_REPOSITORY": str(Path(repository).resolve())}
    return Stack(StackConfig.on_free_ports(data_dir, extra_env=repository_env))


def run_clips(clips: list[zju.Clip], target: str, tag: str, progress: Progress) -> list[ClipRun]:
    runs = []
    for clip in progress(clips, desc=f"clips ({tag})", unit="clip"):
        runs.append(run_clip(clip, target, f"{tag}-{clip.name}"))
    return runs


@dataclass
class Eyeblink8Result:
    frames: int
    frames_with_one_face: int
    blinks_s: list[float]
    certain_blinks_found: int
    winks: int
    long_closures: int
    error: str

    @property
    def passed(self) -> bool:
        return (
            self.certain_blinks_found == len(EYEBLINK8_BLINKS_S)
            and self.winks == 0
            and self.long_closures == 0
            and not self.error
        )


def run_eyeblink8(video: Path, target: str, tag: str, out_dir: Path) -> Eyeblink8Result:
    watched = watch(str(video), target, f"{tag}-eyeblink8", progress=False)
    write_outputs(watched, out_dir / "eyeblink8")
    ended = [e for e in watched.events if e.phase == aggregator_pb2.EVENT_PHASE_ENDED]
    names = [events.type_name(e) for e in ended]
    blinks = [e for e in ended if e.type == aggregator_pb2.EVENT_TYPE_BLINK]

    def found(t: float) -> bool:
        tol = EYEBLINK8_TOLERANCE_S * 1e6
        return any(e.start_us - tol <= t * 1e6 <= e.end_us + tol for e in blinks)

    return Eyeblink8Result(
        frames=len(watched.frames),
        frames_with_one_face=sum(f.faces == 1 for f in watched.frames),
        blinks_s=[round(e.start_us / 1e6, 2) for e in blinks],
        certain_blinks_found=sum(found(t) for t in EYEBLINK8_BLINKS_S),
        winks=names.count("WINK_LEFT") + names.count("WINK_RIGHT"),
        long_closures=sum(
            1
            for e in watched.events
            if e.type == aggregator_pb2.EVENT_TYPE_LONG_CLOSURE and e.phase == aggregator_pb2.EVENT_PHASE_STARTED
        ),
        error=watched.error,
    )


def evaluate_video(
    videos: Path,
    repository: Path,
    out_dir: Path,
    cv_models: list[Path] | None = None,
    subjects: set[int] | None = None,
    target: str | None = None,
    eyeblink8: Path | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run the clips (and the Eyeblink8 video) through TrackFrames and write `video_eval.json` and plots."""
    from blinkstack.tools import progress as bars

    progress = progress or bars.progress
    if cv_models is not None:
        if len(cv_models) < 2:
            raise ValueError("--cv-models needs at least two models: one per person fold")
        missing = [str(m) for m in cv_models if not Path(m).is_file()]
        if missing:
            raise ValueError(f"no such model file: {', '.join(missing)}")
    if eyeblink8 is not None and not Path(eyeblink8).is_file():
        raise ValueError(f"no such video: {eyeblink8} (--no-eyeblink8 skips it)")
    clips = zju.load_clips(videos, subjects)
    if not clips:
        raise ValueError(f"no clips in {videos} for subjects {sorted(subjects or [])}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folds = zju.subject_folds(clips, len(cv_models)) if cv_models else [{c.subject for c in clips}]
    runs: list[ClipRun] = []
    eb8 = None
    with tempfile.TemporaryDirectory(prefix="blinkstack-video-eval-") as tmp:
        for index, fold in enumerate(folds):
            fold_clips = [c for c in clips if c.subject in fold]
            tag = f"eval-{index}-{Path(tmp).name[-8:]}"
            if target:
                runs += run_clips(fold_clips, target, tag, progress)
                continue
            served = repository
            if cv_models:
                served = model_repository_with(cv_models[index], repository, Path(tmp) / f"fold{index}")
            with local_stack(served, Path(tmp) / f"stack{index}") as stack:
                runs += run_clips(fold_clips, stack.endpoints()["aggregator"], tag, progress)
                if eyeblink8 is not None and index == len(folds) - 1 and not cv_models:
                    eb8 = run_eyeblink8(eyeblink8, stack.endpoints()["aggregator"], tag, out_dir)
        if eyeblink8 is not None and target:
            eb8 = run_eyeblink8(eyeblink8, target, f"eval-{Path(tmp).name[-8:]}", out_dir)
    report = score_runs(clips, runs)
    report["people"] = {
        "subjects": sorted({c.subject for c in clips}),
        "cross_validated": bool(cv_models),
        "folds": [sorted(f) for f in folds] if cv_models else None,
        "models": [str(m) for m in cv_models] if cv_models else str(repository),
    }
    if eb8 is not None:
        report["eyeblink8"] = {**asdict(eb8), "passed": eb8.passed}
    (out_dir / "video_eval.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "video_runs.json").write_text(json.dumps([asdict(r) for r in runs]) + "\n")
    plot_timelines(clips, runs, out_dir / "timelines.png")
    return report


def plot_timelines(clips: list[zju.Clip], runs: list[ClipRun], path: Path) -> None:
    """One panel per clip: the subject's prob_open per eye, true blinks shaded, events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {c.name: c for c in clips}
    columns = 4
    rows = -(-len(runs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 1.6 * rows), squeeze=False, sharey=True)
    colours = {"BLINK": "tab:blue", "WINK_LEFT": "tab:orange", "WINK_RIGHT": "tab:purple", "LONG_CLOSURE": "tab:red"}
    for ax, run in zip(axes.flat, runs, strict=False):
        clip, track = by_name[run.clip], run.main_track()
        for s, e in clip.blinks:
            ax.axvspan(s - 0.5, e + 0.5, color="tab:green", alpha=0.25, lw=0)
        for eye, style in ((1, "-"), (2, "--")):
            probs = [next((f[eye] for f in frame if f[0] == track), float("nan")) for frame in run.faces]
            ax.plot(probs, style, lw=0.8, color="black" if eye == 1 else "grey")
        for name, phase, _, a, b in run.events:
            if phase == "ENDED":
                ax.plot([a, b], [1.08, 1.08], lw=4, color=colours.get(name, "black"), solid_capstyle="butt")
        ax.set_title(f"{run.clip}" + (" (stream failed)" if run.error else ""), fontsize=8)
        ax.set_ylim(-0.05, 1.15)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.suptitle(
        "prob_open of the subject's left (black) and right (grey) eye per frame; green: annotated blinks; "
        "bars: events (blue BLINK, orange/purple WINK, red LONG_CLOSURE)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
