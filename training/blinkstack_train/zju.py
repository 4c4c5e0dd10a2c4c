"""ZJU-format blink clips (`videos/`, `clips.csv`, `blinks.csv`, `frames.csv`) and the data card's scoring rule.

The folder layout is the one of `../shared/data/video/zju_dev` (see its data card):
- `clips.csv`: clip, subject, condition (FNN frontal, FTN thin glasses, FBN black-frame glasses, UNN upward
  gaze), frames, annotated_frames, blinks, glasses;
- `blinks.csv`: clip, blink_id, start_frame, end_frame (0-based, inclusive; closing, closed and reopening);
- `frames.csv`: per annotated frame, blink_id (empty outside blinks), non_frontal, and per eye `le_closed` /
  `re_closed` (90-100 % closed) and `le_not_visible` / `re_not_visible`. `le`/`re` are the eyes on the image's
  left/right, not the subject's: the subject's left eye is the image's right eye (`re`).

Scoring (the data card's rule): a detected BLINK `[a, b]` in frames matches a true blink `[s, e]` when
`a <= e + 1` and `b >= s - 1`; each true blink and each detection is matched at most once; a detection lying
wholly after the annotated frames is ignored. Every WINK or LONG_CLOSURE is false: none occurs in these clips.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CONDITIONS = {"FNN": "frontal", "FTN": "thin glasses", "FBN": "black-frame glasses", "UNN": "looking upward"}


@dataclass
class Clip:
    name: str
    subject: int
    condition: str
    video: Path
    frames: int
    annotated_frames: int
    blinks: list[tuple[int, int]]  # (start_frame, end_frame), inclusive
    # Per annotated frame, by the image side of the eye ("le": image left = subject's right eye).
    closed: dict[str, np.ndarray] = field(default_factory=dict)  # "le"/"re" -> bool[annotated_frames]
    not_visible: dict[str, np.ndarray] = field(default_factory=dict)
    in_blink: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def load_clips(folder: Path, subjects: set[int] | None = None) -> list[Clip]:
    """The clips of a ZJU-format folder, in clips.csv order, optionally only those of `subjects`."""
    folder = Path(folder)
    for name in ("clips.csv", "blinks.csv", "frames.csv", "videos"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder} is not a ZJU-format folder: {name} is missing")
    clips = pd.read_csv(folder / "clips.csv")
    blinks = pd.read_csv(folder / "blinks.csv")
    frames = pd.read_csv(folder / "frames.csv")
    result = []
    for row in clips.itertuples(index=False):
        if subjects is not None and int(row.subject) not in subjects:
            continue
        rows = frames[frames["clip"] == row.clip].sort_values("frame")
        n = int(rows["frame"].max()) + 1 if len(rows) else 0
        closed, not_visible = {}, {}
        for side in ("le", "re"):
            closed[side] = np.zeros(n, bool)
            not_visible[side] = np.zeros(n, bool)
            closed[side][rows["frame"]] = rows[f"{side}_closed"].to_numpy() == 1
            not_visible[side][rows["frame"]] = rows[f"{side}_not_visible"].to_numpy() == 1
        in_blink = np.zeros(n, bool)
        in_blink[rows["frame"]] = rows["blink_id"].notna().to_numpy()
        clip_blinks = blinks[blinks["clip"] == row.clip]
        result.append(
            Clip(
                name=row.clip,
                subject=int(row.subject),
                condition=row.condition,
                video=folder / "videos" / f"{row.clip}.mp4",
                frames=int(row.frames),
                annotated_frames=n,
                blinks=[(int(s), int(e)) for s, e in zip(clip_blinks.start_frame, clip_blinks.end_frame, strict=True)],
                closed=closed,
                not_visible=not_visible,
                in_blink=in_blink,
            )
        )
    return result


def subject_folds(clips: list[Clip], folds: int) -> list[set[int]]:
    """Subjects dealt round-robin into `folds` groups, in id order: the person-disjoint cross-validation split."""
    subjects = sorted({c.subject for c in clips})
    return [set(subjects[i::folds]) for i in range(folds)]


@dataclass(frozen=True)
class Match:
    truth: int = 0  # true blinks
    detected: int = 0  # detections that count (not wholly after the annotation)
    matched: int = 0  # true blinks matched one-to-one

    @property
    def precision(self) -> float:
        return self.matched / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: Match) -> Match:
        return Match(self.truth + other.truth, self.detected + other.detected, self.matched + other.matched)


def match_blinks(detected: list[tuple[int, int]], truth: list[tuple[int, int]], annotated_frames: int) -> Match:
    """One clip: detections `[a, b]` against true blinks `[s, e]` (frames, inclusive), the data card's rule."""
    counted = sorted((a, b) for a, b in detected if a < annotated_frames)
    used = [False] * len(truth)
    matched = 0
    for a, b in counted:
        for i, (s, e) in enumerate(truth):
            if not used[i] and a <= e + 1 and b >= s - 1:
                used[i] = True
                matched += 1
                break
    return Match(len(truth), len(counted), matched)


def score_events(clip: Clip, events: list[tuple[str, str, int, int, int]]) -> tuple[Match, Counter]:
    """One clip's events `(type, phase, track, start frame, end frame)`: its BLINKs matched against the truth, and
    its false events by type. Every WINK and LONG_CLOSURE is false here; a long closure counts once, at STARTED."""
    detected = [(a, b) for name, phase, _, a, b in events if name == "BLINK" and phase == "ENDED"]
    false = Counter(
        name
        for name, phase, *_ in events
        if (name.startswith("WINK") and phase == "ENDED") or (name == "LONG_CLOSURE" and phase == "STARTED")
    )
    return match_blinks(detected, clip.blinks, clip.annotated_frames), false


def prf(match: Match) -> dict[str, float | int]:
    return {
        "precision": round(match.precision, 4),
        "recall": round(match.recall, 4),
        "f1": round(match.f1, 4),
        "truth": match.truth,
        "detected": match.detected,
        "matched": match.matched,
    }
