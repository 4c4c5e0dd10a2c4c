"""Blink detection on real webcam clips, through the real stack: `blinkstack-train evaluate-video`.

Each clip of a ZJU-format folder is streamed through `TrackFrames` (one stream per clip, JPEG frames, the
clip's own 30 fps timestamps) to a stack started as `blinkstack up` starts it (Redis and three service
processes on loopback), or to a running one (`--target`). What comes back is scored by the data card's rule
(`training.zju`): BLINK precision/recall/F1 overall, per condition and per subject; WINK and LONG_CLOSURE
events (all false in these clips); per-frame agreement of the annotated subject's eye states with the
annotation (both eyes closed; both open outside blinks); and streams that failed.

Cross-validation by person (`--cv-models A.onnx B.onnx ...`): the subjects are dealt into as many folds as
models, and fold i is run on a stack serving model i, so every figure comes from people that model never
saw when model i was trained without fold i (`blinkstack-train train --video-holdout`). One model per person is
leave-one-person-out. The BLINK F1 comes with a 95 % interval by bootstrap over people (the clips of a person
stay together), and with folds, each fold's own F1.

Encodings (`--encodings jpeg90 jpeg75 jpeg100 raw`): every clip is sent once per encoding, as cameras set to
that JPEG quality (or sending raw pixels) would send it. The report's headline figures are the worst
encoding's (lowest BLINK F1); `by_encoding` has each one's.

Engine constants leave-one-person-out (`--lopo-grid blink_min_ms=50,30 ...`, `engine_replay.py`): the recorded
readings are replayed through the engine, and each person is judged with the grid's setting that scored best on
the other people; the report's `lopo` section.

The landmark recipe (`--baseline`, `landmark_recipe.py`: MediaPipe Face Mesh + eye aspect ratio, fixed and
adaptive thresholds) runs on the same clips at the same encodings and is scored by the same rules, as the
report's `baseline` rows.

The Eyeblink8 windows video joins with its own expectations: one face per frame, no LONG_CLOSURE, no WINK,
and BLINKs at its two certain blinks (18.4 s and 37.2 s).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from blinkstack.aggregator import event_forms
from blinkstack.aggregator.engine import EngineConfig
from blinkstack.local.stack import Stack, StackConfig
from blinkstack.tools.reports import write_outputs
from blinkstack.tools.watch import FrameEncoding, watch
from blinkstack.v1 import aggregator_pb2, types_pb2
from blinkstack_train import engine_replay, landmark_recipe, zju

EYEBLINK8_BLINKS_S = (18.4, 37.2)
Progress = Callable[..., Iterable]  # tqdm, or anything that wraps an iterable the same way
EYEBLINK8_TOLERANCE_S = 0.5
# Frames 1153-1200 of the Eyeblink8 windows video: the person looks down, lids lowered, iris visible; eyes open.
EYEBLINK8_DOWNWARD_GAZE_FRAMES = (1153, 1200)
BOOTSTRAP_RESAMPLES = 2000
CLOSED = types_pb2.EYE_STATE_CLOSED
OPEN = types_pb2.EYE_STATE_OPEN


@dataclass
class ClipRun:
    """What the stack answered for one clip."""

    clip: str
    subject: int
    condition: str
    fps: float
    encoding: str = FrameEncoding().name
    # Per frame, for every face: (track_id, prob_left, prob_right, state_left, state_right, aperture_left,
    # aperture_right); an aperture is NaN where the front end gave no lids.
    faces: list[list[tuple[int, float, float, int, int, float, float]]] = field(default_factory=list)
    # (type name, phase name, track_id, start frame, end frame)
    events: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    error: str = ""

    def main_track(self) -> int | None:
        """The annotated subject: the track seen in most frames."""
        counts = Counter(face[0] for frame in self.faces for face in frame)
        return counts.most_common(1)[0][0] if counts else None


def _aperture(eye: aggregator_pb2.EyeReading) -> float:
    return eye.landmarks.aperture if eye.HasField("landmarks") else float("nan")


def run_clip(clip: zju.Clip, target: str, stream_id: str, encoding: FrameEncoding = FrameEncoding()) -> ClipRun:
    run = ClipRun(clip.name, clip.subject, clip.condition, 30.0, encoding.name)

    def on_result(result: aggregator_pb2.FrameResult) -> None:
        run.faces.append(
            [
                (
                    f.track_id,
                    f.left_eye.prob_open,
                    f.right_eye.prob_open,
                    f.left_eye.state,
                    f.right_eye.state,
                    _aperture(f.left_eye),
                    _aperture(f.right_eye),
                )
                for f in result.faces
            ]
        )

    watched = watch(str(clip.video), target, stream_id, on_result=on_result, progress=False, encoding=encoding)
    run.fps, run.error = watched.fps_source, watched.error
    for e in watched.events:
        phase = "STARTED" if e.phase == aggregator_pb2.EVENT_PHASE_STARTED else "ENDED"
        frames = (round(e.start_us * run.fps / 1e6), round(e.end_us * run.fps / 1e6))
        run.events.append((event_forms.type_name(e), phase, e.track_id, *frames))
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


def bootstrap_f1_interval(
    by_subject: dict[int, zju.Match], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> list[float]:
    """95 % percentile interval of BLINK F1, resampling people (all of a person's clips together)."""
    subjects = sorted(by_subject)
    rng = random.Random(seed)
    f1s = []
    for _ in range(resamples):
        total = zju.Match()
        for subject in rng.choices(subjects, k=len(subjects)):
            total = total + by_subject[subject]
        f1s.append(total.f1)
    f1s.sort()
    return [round(f1s[int(0.025 * (resamples - 1))], 4), round(f1s[int(0.975 * (resamples - 1))], 4)]


def score_runs(clips: list[zju.Clip], runs: list[ClipRun], folds: list[set[int]] | None = None) -> dict:
    """Scores of one encoding's runs; with `folds` (the person folds of a cross-validation), also each fold's."""
    by_name = {c.name: c for c in clips}
    total = zju.Match()
    by_condition: defaultdict[str, zju.Match] = defaultdict(zju.Match)
    by_subject: defaultdict[int, zju.Match] = defaultdict(zju.Match)
    agreement: Counter = Counter()
    false_events: Counter = Counter()
    per_clip = {}
    for run in runs:
        clip = by_name[run.clip]
        match, false_here = zju.score_events(clip, run.events)
        total = total + match
        by_condition[clip.condition] += match
        by_subject[clip.subject] += match
        counts = frame_agreement(clip, run)
        agreement.update(counts)
        false_events.update(false_here)
        per_clip[run.clip] = {**zju.prf(match), "false_events": dict(false_here), "error": run.error, **counts}
    scores = {
        "blink": zju.prf(total),
        "blink_f1_ci95": bootstrap_f1_interval(dict(by_subject)),
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
    if folds and len(folds) > 1:
        fold_f1 = [zju.Match() for _ in folds]
        for index, fold in enumerate(folds):
            for subject in fold:
                fold_f1[index] = fold_f1[index] + by_subject[subject]
        scores["blink_f1_by_fold"] = [round(m.f1, 4) for m in fold_f1]
        scores["blink_f1_fold_spread"] = round(max(m.f1 for m in fold_f1) - min(m.f1 for m in fold_f1), 4)
    return scores


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


def run_clips(
    clips: list[zju.Clip], target: str, tag: str, progress: Progress, encoding: FrameEncoding = FrameEncoding()
) -> list[ClipRun]:
    runs = []
    for clip in progress(clips, desc=f"clips ({tag}, {encoding.name})", unit="clip"):
        runs.append(run_clip(clip, target, f"{tag}-{encoding.name}-{clip.name}", encoding))
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
    events_during_downward_gaze: int = 0

    @property
    def passed(self) -> bool:
        return (
            self.certain_blinks_found == len(EYEBLINK8_BLINKS_S)
            and self.winks == 0
            and self.long_closures == 0
            and self.events_during_downward_gaze == 0
            and not self.error
        )


def run_eyeblink8(
    video: Path, target: str, tag: str, out_dir: Path, encoding: FrameEncoding = FrameEncoding()
) -> Eyeblink8Result:
    watched = watch(str(video), target, f"{tag}-{encoding.name}-eyeblink8", progress=False, encoding=encoding)
    write_outputs(watched, out_dir)
    ended = [e for e in watched.events if e.phase == aggregator_pb2.EVENT_PHASE_ENDED]
    names = [event_forms.type_name(e) for e in ended]
    blinks = [e for e in ended if e.type == aggregator_pb2.EVENT_TYPE_BLINK]

    def found(t: float) -> bool:
        tol = EYEBLINK8_TOLERANCE_S * 1e6
        return any(e.start_us - tol <= t * 1e6 <= e.end_us + tol for e in blinks)

    first, last = (frame * 1e6 / watched.fps_source for frame in EYEBLINK8_DOWNWARD_GAZE_FRAMES)
    return Eyeblink8Result(
        events_during_downward_gaze=sum(first <= e.end_us and e.start_us <= last for e in ended),
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
    encodings: list[FrameEncoding] | None = None,
    baseline_env: Path | None = None,
    lopo_grid: dict[str, list[float]] | None = None,
) -> dict:
    """Run the clips (and the Eyeblink8 video) through TrackFrames at each encoding; write `video_eval.json`
    (the worst encoding's figures, and `by_encoding`), `video_runs.json` and the timelines."""
    from blinkstack.tools import progress as bars

    progress = progress or bars.progress
    encodings = encodings or [FrameEncoding()]
    if len({e.name for e in encodings}) != len(encodings):
        raise ValueError(f"an encoding is named twice: {' '.join(e.name for e in encodings)}")
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
    runs: dict[str, list[ClipRun]] = {e.name: [] for e in encodings}
    eb8: dict[str, Eyeblink8Result] = {}

    def eyeblink8_dir(encoding: FrameEncoding) -> Path:
        return out_dir / ("eyeblink8" if len(encodings) == 1 else f"eyeblink8_{encoding.name}")

    def run_all(fold_clips: list[zju.Clip], aggregator: str, tag: str, with_eyeblink8: bool) -> None:
        for encoding in encodings:
            runs[encoding.name] += run_clips(fold_clips, aggregator, tag, progress, encoding)
            if with_eyeblink8 and eyeblink8 is not None:
                eb8[encoding.name] = run_eyeblink8(eyeblink8, aggregator, tag, eyeblink8_dir(encoding), encoding)

    with tempfile.TemporaryDirectory(prefix="blinkstack-video-eval-") as tmp:
        for index, fold in enumerate(folds):
            fold_clips = [c for c in clips if c.subject in fold]
            tag = f"eval-{index}-{Path(tmp).name[-8:]}"
            last = index == len(folds) - 1
            if target:
                run_all(fold_clips, target, tag, eyeblink8 is not None and last)
                continue
            served = repository
            if cv_models:
                served = model_repository_with(cv_models[index], repository, Path(tmp) / f"fold{index}")
            with local_stack(served, Path(tmp) / f"stack{index}") as stack:
                # With fold models no model is the served one, so the Eyeblink8 video (judged by the served
                # model) is not run.
                run_all(
                    fold_clips, stack.endpoints()["aggregator"], tag, eyeblink8 is not None and last and not cv_models
                )
    scores = {name: score_runs(clips, encoded, folds) for name, encoded in runs.items()}
    report = worst_of(scores)
    report["people"] = {
        "subjects": sorted({c.subject for c in clips}),
        "cross_validated": bool(cv_models),
        "folds": [sorted(f) for f in folds] if cv_models else None,
        "models": [str(m) for m in cv_models] if cv_models else str(repository),
    }
    if eb8:
        failing = [name for name, result in eb8.items() if not result.passed]
        shown = failing[0] if failing else encodings[0].name
        report["eyeblink8"] = {**asdict(eb8[shown]), "passed": eb8[shown].passed, "encoding": shown}
        for name, result in eb8.items():
            report["by_encoding"][name]["eyeblink8"] = {**asdict(result), "passed": result.passed}
    if baseline_env is not None:
        report["baseline"] = score_recipe(baseline_env, clips, encodings)
    if lopo_grid:
        report["lopo"] = score_lopo(clips, runs, folds, lopo_grid)
    (out_dir / "video_eval.json").write_text(json.dumps(report, indent=2) + "\n")
    every_run = [asdict(r) for encoded in runs.values() for r in encoded]
    (out_dir / "video_runs.json").write_text(json.dumps(every_run) + "\n")
    plot_timelines(clips, runs[report["encoding"]], out_dir / "timelines.png", report["encoding"])
    return report


def worst_of(scores: dict[str, dict]) -> dict:
    """The lowest-F1 encoding's scores, named in `encoding`, with every encoding's in `by_encoding`."""
    worst = min(scores, key=lambda name: (scores[name]["blink"]["f1"], -len(scores[name]["failed_streams"])))
    return {
        **scores[worst],
        "encoding": worst,
        "by_encoding": {name: {k: v for k, v in score.items() if k != "clips"} for name, score in scores.items()},
    }


def score_lopo(
    clips: list[zju.Clip], runs: dict[str, list[ClipRun]], folds: list[set[int]], grid: dict[str, list[float]]
) -> dict:
    """Each person judged by engine constants chosen on the other people (`engine_replay`), per encoding."""
    base = EngineConfig()  # what the stack started here runs
    scores = {}
    for name, encoded in runs.items():
        judged, chosen = engine_replay.leave_one_person_out(clips, encoded, grid, base)
        score = score_runs(clips, judged, folds)
        score["constants_by_person"] = {str(person): setting for person, setting in chosen.items()}
        score["constants_chosen"] = dict(Counter(json.dumps(setting) for setting in chosen.values()))
        score["replay_matches_stack"] = f"{engine_replay.replay_matches_stack(encoded, base)}/{len(encoded)} clips"
        scores[name] = score
    return {"grid": grid, **{k: v for k, v in worst_of(scores).items() if k != "clips"}}


def score_recipe(env: Path, clips: list[zju.Clip], encodings: list[FrameEncoding]) -> dict[str, dict]:
    """The landmark recipe's rows (fixed and adaptive threshold), each scored like the stack at each encoding."""
    scores: dict[str, dict[str, dict]] = {variant: {} for variant in landmark_recipe.VARIANTS}
    for encoding in encodings:
        readings = landmark_recipe.run_recipe(env, clips, encoding)
        for variant in landmark_recipe.VARIANTS:
            runs = []
            for clip in clips:
                reading = readings[clip.name]
                run = ClipRun(clip.name, clip.subject, clip.condition, 30.0, encoding.name)
                for ear, closed in zip(reading.ear, reading.closed[variant], strict=True):
                    state = CLOSED if closed else OPEN
                    run.faces.append([(1, float("nan"), float("nan"), state, state, ear, ear)] if ear == ear else [])
                run.events = [("BLINK", "ENDED", 1, a, b) for a, b in reading.blinks[variant]]
                runs.append(run)
            scores[variant][encoding.name] = score_runs(clips, runs)
    return {variant: {k: v for k, v in worst_of(s).items() if k != "clips"} for variant, s in scores.items()}


def plot_timelines(clips: list[zju.Clip], runs: list[ClipRun], path: Path, encoding: str = "") -> None:
    """One panel per clip: the subject's prob_open and lid aperture per eye, true blinks shaded, events marked."""
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
            # The lid aperture relative to the clip's median (mostly open) level: the landmark signal.
            apertures = np.array([next((f[eye + 4] for f in frame if f[0] == track), np.nan) for frame in run.faces])
            if np.isfinite(apertures).any():
                ax.plot(apertures / np.nanmedian(apertures), style, lw=0.6, color="tab:cyan")
        for name, phase, _, a, b in run.events:
            if phase == "ENDED":
                ax.plot([a, b], [1.08, 1.08], lw=4, color=colours.get(name, "black"), solid_capstyle="butt")
        ax.set_title(f"{run.clip}" + (" (stream failed)" if run.error else ""), fontsize=8)
        ax.set_ylim(-0.05, 1.15)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.suptitle(
        "prob_open of the subject's left (black) and right (grey) eye per frame; cyan: lid aperture / the clip's "
        "median; green: annotated blinks; bars: events (blue BLINK, orange/purple WINK, red LONG_CLOSURE)"
        + (f"; frames sent as {encoding}" if encoding else ""),
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
