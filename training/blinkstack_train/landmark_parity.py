"""Parity of the served face landmark model with the original runtime: MediaPipe's own Face Mesh, on real frames.

The converted model cannot be compared tensor by tensor with the TFLite file: its custom operators exist only
inside MediaPipe. So the comparison is end to end, on the same real frames (ZJU dev clips and the Eyeblink8
video, JPEG at quality 90 as cameras send them): MediaPipe's FaceMesh with `refine_landmarks` (in its own
environment, `face_mesh_runner.py`) against the detector's landmark front end as the service runs it. Both
follow each face from frame to frame with the same rule; they differ in the face detector that starts a track
(BlazeFace there, CenterFace here), so the first frames of a clip may differ slightly.

Compared per frame where both found the face: the 468 refined mesh points (each eye's contour points replace the
mesh points they refine, as MediaPipe does), as a distance over the inter-ocular distance, and each eye's lid
aperture computed the same way from both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import tflite
from flatbuffers import flexbuffers

from blinkstack.common.model_repository import FACE_LANDMARK_MODEL
from blinkstack.common.preprocess import decode_image
from blinkstack.detector.faces import EyeOutline
from blinkstack.detector.front_end import embedded_models
from blinkstack.tools.progress import progress
from blinkstack.tools.watch import FrameEncoding, read_video
from blinkstack_train import data, zju
from blinkstack_train.face_landmarks import MEMBER, MEMBER_SHA256

RUNNER = Path(__file__).with_name("face_mesh_runner.py")
EYEBLINK8 = Path("video") / "eyeblink8_v8_windows.mp4"
OUTER, INNER, LOWER, UPPER = 0, 8, slice(1, 8), slice(9, 16)  # the eye contour's order (see the adapter)


def _site_packages(env: Path) -> Path:
    found = sorted(Path(env).glob("lib/python3*/site-packages"))
    if not found or not (found[0] / "mediapipe").is_dir():
        raise FileNotFoundError(f"no mediapipe in {env}; create it with `make mediapipe-env`")
    return found[0]


def eye_subsets(member: bytes) -> dict[str, list[int]]:
    """The mesh points each eye's 71 contour points refine, read from the model's own crop operators: the one
    levelled on mesh points 33 -> 133 is the subject's right eye, 362 -> 263 the left one."""
    model = tflite.Model.GetRootAsModel(member, 0)
    graph = model.Subgraphs(0)
    subsets = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if model.OperatorCodes(op.OpcodeIndex()).CustomCode() != b"Landmarks2TransformMatrix":
            continue
        options = flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes())
        side = {33: "right", 362: "left"}.get(options["left_rotation_idx"])
        if side is not None:
            subsets[side] = list(options["subset_idxs"])
    return subsets


def frames_for_parity(data_dir: Path, eyeblink8_frames: int = 600) -> tuple[list[bytes], list[str]]:
    """JPEG frames and their clip: every ZJU dev clip without and with black-frame glasses, then the start of the
    Eyeblink8 video."""
    jpegs, streams = [], []
    clips = [c for c in zju.load_clips(Path(data_dir) / "video" / "zju_dev") if c.condition in ("FNN", "FBN")]
    sources = [(c.name, c.video, None) for c in clips] + [("eyeblink8", Path(data_dir) / EYEBLINK8, eyeblink8_frames)]
    for name, video, limit in sources:
        for frame in read_video(video, limit):
            jpegs.append(FrameEncoding().jpeg(frame))
            streams.append(name)
    return jpegs, streams


def _refined(mesh: np.ndarray, outlines: dict[str, np.ndarray], subsets: dict[str, list[int]]) -> np.ndarray:
    refined = mesh.copy()
    for side, contour in outlines.items():
        refined[subsets[side]] = contour
    return refined


async def _ours(repository: Path, jpegs: list[bytes], streams: list[str], subsets: dict) -> np.ndarray:
    """The front end's refined mesh per frame [F, 468, 2] (NaN without a face)."""
    models = embedded_models(repository)
    await models.start()
    result = np.full((len(jpegs), 468, 2), np.nan)
    stream, current = None, None
    try:
        for i, (jpeg, name) in enumerate(progress(list(zip(jpegs, streams, strict=True)), desc="front end")):
            if stream is None or name != current:
                stream, current = models.stream(), name
            faces, _, _ = await stream.faces(decode_image(jpeg))
            if faces:
                face = faces[0]
                contours = {side: _contour(getattr(face, f"{side}_eye").outline) for side in ("left", "right")}
                result[i] = _refined(face.landmarks, contours, subsets)
    finally:
        await models.close()
    return result


def _contour(outline: EyeOutline) -> np.ndarray:
    """The first 16 contour points back in the model's order (the rest of the 71 are brow points the adapter
    does not keep): they stand in for the same 16 mesh points in MediaPipe's refinement."""
    points = np.full((71, 2), np.nan)
    points[OUTER], points[INNER] = outline.outer_corner, outline.inner_corner
    points[LOWER], points[UPPER] = outline.lower_lid, outline.upper_lid
    return points


def _aperture(points: np.ndarray, subset: list[int]) -> float:
    contour = points[subset]
    return EyeOutline(contour[OUTER], contour[INNER], contour[UPPER], contour[LOWER]).aperture


def compare(ours: np.ndarray, theirs: np.ndarray, subsets: dict[str, list[int]]) -> dict:
    both = ~np.isnan(ours[:, 0, 0]) & ~np.isnan(theirs[:, 0, 0])
    a, b = ours[both], theirs[both, :468]
    kept = ~np.isnan(a[0, :, 0])  # brow points of the eye contours are not kept by the adapter
    iod = np.linalg.norm(a[:, 33] + a[:, 133] - a[:, 263] - a[:, 362], axis=1) / 2
    distance = (np.linalg.norm(a[:, kept] - b[:, kept], axis=2) / iod[:, None]).ravel()
    apertures = np.array(
        [
            [_aperture(x, subsets[side]) - _aperture(y, subsets[side]) for side in subsets]
            for x, y in zip(a, b, strict=True)
        ]
    ).ravel()
    return {
        "frames": len(ours),
        "frames_with_a_face_in_both": int(both.sum()),
        "face_found_by_one_only": int((np.isnan(ours[:, 0, 0]) != np.isnan(theirs[:, 0, 0])).sum()),
        "point_distance_over_iod": {
            "median": float(np.median(distance)),
            "p99": float(np.percentile(distance, 99)),
            "max": float(distance.max()),
        },
        "aperture_difference": {
            "median_abs": float(np.median(np.abs(apertures))),
            "p99_abs": float(np.percentile(np.abs(apertures), 99)),
        },
    }


def check_parity(repository: Path, env: Path, data_dir: Path = data.DEFAULT_DATA_DIR) -> dict:
    """Compare, and record the figures in the model's SOURCE.json (returned)."""
    member = (_site_packages(env) / MEMBER).read_bytes()
    if hashlib.sha256(member).hexdigest() != MEMBER_SHA256:
        raise RuntimeError(f"{env} has another {MEMBER} than the one served (sha256 differs)")
    subsets = eye_subsets(member)
    jpegs, streams = frames_for_parity(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        frames, out = Path(tmp) / "frames.npz", Path(tmp) / "mediapipe.npz"
        np.savez(frames, jpeg=np.array(jpegs, dtype=object), stream=np.array(streams))
        subprocess.run([str(Path(env) / "bin" / "python"), str(RUNNER), str(frames), str(out), "--refine"], check=True)
        theirs = np.load(out)["landmarks"]
    ours = asyncio.run(_ours(Path(repository), jpegs, streams, subsets))
    report = compare(ours, theirs, subsets)
    source_path = Path(repository) / FACE_LANDMARK_MODEL / "SOURCE.json"
    source = json.loads(source_path.read_text())
    source["parity_with_mediapipe"] = {
        **report,
        "against": "mediapipe 0.10.21 FaceMesh(refine_landmarks=True), video mode",
        "frames_from": "ZJU dev clips FNN and FBN (20 clips) and the first 600 Eyeblink8 frames, JPEG quality 90",
    }
    source_path.write_text(json.dumps(source, indent=2) + "\n")
    return source
