"""Detector and detector -> eye-state evaluation on real faces (`faces/faces_dev.parquet`).

Each face photo is pasted into a 640x480 camera-like frame (mid-grey with sensor noise) at several face widths
and at a seeded random position; the embedded detector runs on the frame, its eye boxes are cut from the frame
exactly as the eye-state service cuts them, and the committed eye-state model classifies the crops. A face
counts as found when the detector reports a face whose box contains the pasted face's centre; it counts as
classified correctly when both eyes get the face's label (closed faces: both closed; open faces: both open).

The closed faces are CEW faces: their eye patches are in `eyes/cew_dev.parquet`, which the eye-state model
was partly trained on, so the report also gives the rates for the faces in the CEW test split alone.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from blinkstack.common.images import box_message, crop
from blinkstack.common.model_repository import EYE_STATE_MODEL, resolve_model_file
from blinkstack.common.onnx_runtime import create_session, run_prob_open
from blinkstack.common.preprocess import decode_image, preprocess_batch
from blinkstack.detector.adapters import AdapterSettings
from blinkstack.detector.front_end import embedded_models
from blinkstack.tools.progress import progress
from blinkstack_train import data, zju

FRAME_WIDTH, FRAME_HEIGHT = 640, 480
FACE_WIDTHS = (80, 140, 220)


@dataclass(frozen=True)
class Trial:
    index: int  # row in faces_dev
    face_width: int
    eyes: str  # "open" / "closed"
    split: str  # the face's CEW split ("train"/"val"/"test"), or "utkface"
    found: bool
    prob_left: float = float("nan")
    prob_right: float = float("nan")

    @property
    def correct(self) -> bool:
        if not self.found:
            return False
        want_open = self.eyes == "open"
        return (self.prob_left >= 0.5) == want_open and (self.prob_right >= 0.5) == want_open


def load_faces(data_dir: Path = data.DEFAULT_DATA_DIR) -> pd.DataFrame:
    faces = pd.read_parquet(Path(data_dir) / "faces" / "faces_dev.parquet")
    faces["split"] = [
        data._cew_split(group) if source == "CEW" else "utkface"
        for group, source in zip(faces.group_id, faces.source, strict=True)
    ]
    return faces


def paste(face: np.ndarray, face_width: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """`face` scaled to `face_width` on a noisy grey 640x480 frame at a random position; returns its centre too."""
    height = max(1, round(face.shape[0] * face_width / face.shape[1]))
    interpolation = cv2.INTER_AREA if face_width < face.shape[1] else cv2.INTER_LINEAR
    scaled = cv2.resize(face, (face_width, height), interpolation=interpolation)
    frame = np.clip(rng.normal(118, 6, (FRAME_HEIGHT, FRAME_WIDTH, 3)), 0, 255).astype(np.uint8)
    x = int(rng.integers(0, FRAME_WIDTH - face_width + 1))
    y = int(rng.integers(0, max(1, FRAME_HEIGHT - height + 1)))
    frame[y : y + height, x : x + face_width] = scaled[: FRAME_HEIGHT - y]
    return frame, (x + face_width / 2, y + height / 2)


async def _run(
    faces: pd.DataFrame, repository: Path, face_widths: tuple[int, ...], seed: int, eye_model: Path | None
) -> list[Trial]:
    models = embedded_models(repository)
    await models.start()
    eye_session = create_session(eye_model or resolve_model_file(repository / EYE_STATE_MODEL)[0])
    rng = np.random.default_rng(seed)
    trials = []
    try:
        jobs = [(i, w) for i in range(len(faces)) for w in face_widths]
        for i, width in progress(jobs, desc="faces", unit="frame"):
            row = faces.iloc[i]
            frame, (cx, cy) = paste(decode_image(row.image_jpeg), width, rng)
            found, _, _ = await models.stream().faces(frame)  # each pasted frame is its own stream
            hits = [f for f in found if f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3]]
            if not hits:
                trials.append(Trial(i, width, row.eyes, row.split, False))
                continue
            face = hits[0]
            eyes = (face.left_eye, face.right_eye)
            crops = [crop(frame, box_message(*eye.crop.box, eye.crop.angle_deg), "eye") for eye in eyes]
            left, right = run_prob_open(eye_session, preprocess_batch(crops))
            trials.append(Trial(i, width, row.eyes, row.split, True, float(left), float(right)))
    finally:
        await models.close()
    return trials


def evaluate_faces(
    repository: Path,
    data_dir: Path = data.DEFAULT_DATA_DIR,
    face_widths: tuple[int, ...] = FACE_WIDTHS,
    seed: int = 0,
    limit: int | None = None,
    eye_model: Path | None = None,
) -> list[Trial]:
    """`eye_model`: an eye-state ONNX file to judge instead of the repository's served one."""
    faces = load_faces(data_dir)
    if limit:
        faces = faces.groupby("eyes", group_keys=False).head(limit)
    return asyncio.run(_run(faces, Path(repository), face_widths, seed, eye_model))


def summarize(trials: list[Trial]) -> dict:
    frame = pd.DataFrame(
        [
            {"eyes": t.eyes, "split": t.split, "width": t.face_width, "found": t.found, "correct": t.correct}
            for t in trials
        ]
    )

    def rates(part: pd.DataFrame) -> dict:
        return {"frames": len(part), "found": float(part.found.mean()), "both_eyes_correct": float(part.correct.mean())}

    return {
        "by_eyes": {eyes: rates(part) for eyes, part in frame.groupby("eyes")},
        "by_eyes_and_width": {
            f"{eyes}@{width}px": rates(part) for (eyes, width), part in frame.groupby(["eyes", "width"])
        },
        "closed_cew_test_split_only": rates(frame[(frame.eyes == "closed") & (frame.split == "test")]),
        "all": rates(frame),
    }


def write_report(trials: list[Trial], out_dir: Path) -> dict:
    """summary JSON plus a bar chart of found / both-eyes-correct rates per label and face width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(trials)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "faces_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    groups = summary["by_eyes_and_width"]
    names = list(groups)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, [groups[n]["found"] for n in names], 0.4, label="face + both eyes found")
    ax.bar(x + 0.2, [groups[n]["both_eyes_correct"] for n in names], 0.4, label="both eyes classified correctly")
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylim(0.8, 1.0)
    ax.axhline(0.98, color="grey", ls=":", lw=1)
    ax.axhline(0.95, color="grey", ls="--", lw=1)
    ax.legend(loc="lower right")
    ax.set_title("faces_dev pasted into 640x480 frames: detector and detector -> eye-state")
    fig.tight_layout()
    fig.savefig(out_dir / "faces_eval.png", dpi=120)
    plt.close(fig)
    return summary


def _match_patch(gray: np.ndarray, patch: np.ndarray, iod: float) -> tuple[float, float, np.ndarray | None]:
    """(correlation, side, centre in face pixels) of the best match of `patch` in `gray` over patch sides of
    0.3-1.2 IOD; centre None when nothing correlates at 0.8 or more."""
    best = (0.8, 0.0, None)
    for side in np.arange(0.3, 1.2, 0.02) * iod:
        scale = patch.shape[1] / side
        size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
        if min(size) <= patch.shape[0]:
            continue
        score = cv2.matchTemplate(cv2.resize(gray, size, interpolation=cv2.INTER_AREA), patch, cv2.TM_CCOEFF_NORMED)
        _, peak, _, location = cv2.minMaxLoc(score)
        if peak > best[0]:
            best = (peak, side, (np.array(location) + patch.shape[0] / 2) / scale)
    return best


def measure_eye_geometry(repository: Path, data_dir: Path = data.DEFAULT_DATA_DIR, faces: int = 150) -> dict:
    """Where the CEW eye patches sit in their source faces, relative to the detector's eye landmarks.

    Each 24x24 patch of `eyes/cew_dev.parquet` is template-matched back into its face photo over a range of
    scales; the best match (normalised correlation >= 0.8) gives the patch's side and centre in face pixels,
    reported as a multiple of the detected inter-ocular distance (IOD) and as an offset from the nearest eye
    landmark. This is how CenterFace's `EYE_BOX_SCALE` was chosen.
    """
    all_faces = load_faces(data_dir)
    sample = all_faces[all_faces.source == "CEW"].sample(faces, random_state=0)
    patches = pd.read_parquet(Path(data_dir) / "eyes" / "cew_dev.parquet")

    async def landmarks_of(images: list[np.ndarray]) -> list[np.ndarray | None]:
        models = embedded_models(repository, "centerface", settings=AdapterSettings(input_width=640))
        await models.start()
        found = []
        for image in images:
            padded = cv2.copyMakeBorder(image, 200, 200, 200, 200, cv2.BORDER_CONSTANT, value=(127, 127, 127))
            faces_found, _ = await models.detector.detect(padded)
            eyes = [np.array([f.right_eye.centre, f.left_eye.centre]) - 200 for f in faces_found]
            found.append(eyes[0] if eyes else None)
        await models.close()
        return found

    images = [decode_image(blob) for blob in sample.image_jpeg]
    ratios, offsets, side_matches = [], [], []
    for image, group, landmarks in zip(images, sample.group_id, asyncio.run(landmarks_of(images)), strict=True):
        if landmarks is None:
            continue
        iod = float(np.hypot(*(landmarks[1] - landmarks[0])))
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        for _, patch_row in patches[patches.group_id == group].iterrows():
            patch = cv2.imdecode(np.frombuffer(patch_row.image_png, np.uint8), cv2.IMREAD_GRAYSCALE)
            if patch is None:
                raise ValueError(f"patch {patch_row.name} of group {group} is not a PNG")
            best = _match_patch(gray, patch, iod)
            if best[2] is None:
                continue
            nearest = int(np.argmin(np.linalg.norm(landmarks[:2] - best[2], axis=1)))
            ratios.append(best[1] / iod)
            offsets.append((best[2] - landmarks[nearest]) / iod)
            side_matches.append((patch_row.eye_side == "left") == (nearest == 1))  # [right eye, left eye]
    ratios_arr, offsets_arr = np.array(ratios), np.array(offsets)
    return {
        "patches_matched": len(ratios),
        "side_over_iod": {
            "median": float(np.median(ratios_arr)),
            "p10": float(np.percentile(ratios_arr, 10)),
            "p90": float(np.percentile(ratios_arr, 90)),
        },
        "centre_offset_over_iod_median_xy": np.median(offsets_arr, axis=0).tolist(),
        "cew_left_is_landmark_1": float(np.mean(side_matches)),
    }


def measure_landmark_crop_geometry(repository: Path, data_dir: Path = data.DEFAULT_DATA_DIR, step: int = 3) -> dict:
    """How the eye crops that CenterFace's points give (the boxes the eye-state model was trained with) sit
    relative to the eyes' own corners from the landmark front end, on the ZJU dev clips (every `step`th frame,
    open eyes only).

    Per eye: the box side over the eye's width (corner to corner), and the box centre's offset from the corners'
    midpoint in eye widths, along the head's roll (x) and across it (y, positive down). This is how
    `blinkstack.detector.eye_crops.SIDE_PER_EYE_WIDTH` and `CENTRE_SHIFT` were chosen.
    """
    from blinkstack.detector.adapters.centerface import face_from_landmarks
    from blinkstack_train.video_crops import eye_labels, read_frames

    async def run() -> list[tuple[float, float, float]]:
        landmark_models = embedded_models(repository)
        centerface = embedded_models(repository, "centerface")
        await landmark_models.start()
        await centerface.start()
        rows = []
        try:
            for clip in progress(zju.load_clips(Path(data_dir) / "video" / "zju_dev"), desc="clips", unit="clip"):
                stream = landmark_models.stream()
                for i, frame in enumerate(read_frames(clip.video)):
                    followed, _, _ = await stream.faces(frame)
                    if i % step or not followed or min(eye_labels(clip, i)) != 1:
                        continue
                    detected, _ = await centerface.detector.detect(frame)
                    if not detected:
                        continue
                    rows += _crop_offsets(followed[0], face_from_landmarks(detected[0].landmarks, detected[0].box, 1))
        finally:
            await landmark_models.close()
            await centerface.close()
        return rows

    values = np.array(asyncio.run(run()))

    def spread(column: np.ndarray) -> dict:
        return {"median": float(np.median(column)), "p10": float(np.percentile(column, 10)),
                "p90": float(np.percentile(column, 90))}  # fmt: skip

    return {
        "eyes": len(values),
        "side_over_eye_width": spread(values[:, 0]),
        "centre_offset_along_roll_over_eye_width": spread(values[:, 1]),
        "centre_offset_across_roll_over_eye_width": spread(values[:, 2]),
    }


def _crop_offsets(followed, detected) -> list[tuple[float, float, float]]:
    """(side / width, offset along, offset across) of each of `detected`'s eye boxes against `followed`'s eye."""
    from blinkstack.detector.eye_crops import corner_midpoint, head_roll

    roll = head_roll(followed.right_eye.centre, followed.left_eye.centre)
    along = np.array([np.cos(roll), np.sin(roll)])
    across = np.array([-np.sin(roll), np.cos(roll)])
    rows = []
    for eye, box_eye in ((followed.left_eye, detected.left_eye), (followed.right_eye, detected.right_eye)):
        width = eye.outline.width
        offset = (box_eye.crop.centre - corner_midpoint(eye.outline)) / width
        rows.append((box_eye.crop.side / width, float(offset @ along), float(offset @ across)))
    return rows
