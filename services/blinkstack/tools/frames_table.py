"""frames.csv: one row per frame and face, as `blinkstack watch` receives them (a frame without a face is one
row with the face columns empty and both eyes UNKNOWN, reason NO_FACE). Written as the results arrive, so a run
of any length stays in constant memory. The README's "Per-frame export" table documents COLUMNS; a test keeps
the two equal."""

from __future__ import annotations

import csv
from pathlib import Path

from blinkstack.v1 import aggregator_pb2, types_pb2

COLUMNS = (
    ("frame", "the frame's seq (its index in the video, from 0)"),
    ("timestamp_us", "the frame's time in microseconds (video time for files, capture time for cameras)"),
    ("stream_id", "the stream the frame belongs to"),
    ("status", "PROCESSED, LATE (not fed to the engine) or DUPLICATE (already seen)"),
    ("faces", "faces reported in this frame"),
    ("track_id", "the face's track id (empty: no face)"),
    ("face_x", "face box, left edge in pixels"),
    ("face_y", "face box, top edge in pixels"),
    ("face_w", "face box width"),
    ("face_h", "face box height"),
    ("face_score", "the face's score: the face detector's, or the landmark model's face presence"),
    *(
        column
        for eye in ("left", "right")
        for column in (
            (f"{eye}_x", f"the subject's {eye} eye box, left edge (of the box before its turn)"),
            (f"{eye}_y", f"the subject's {eye} eye box, top edge (of the box before its turn)"),
            (f"{eye}_size", f"the {eye} eye box side (square)"),
            (f"{eye}_angle", f"the {eye} eye box's turn in degrees (head roll undone; 0 without a landmark model)"),
            (
                f"{eye}_aperture",
                f"the {eye} eye's lid aperture: lid distance over eye width (empty without a landmark model)",
            ),
            (f"{eye}_prob_open", f"P({eye} eye open) from the model (empty: not classified)"),
            (f"{eye}_prob_eye", f"the eye gate's P(the {eye} eye's crop is an eye) (empty: not classified)"),
            (f"{eye}_state", "open, closed or unknown"),
            (
                f"{eye}_reason",
                "why unknown: no_face, eye_too_small, eye_outside_frame, low_confidence_detection, "
                "model_uncertain or not_an_eye (empty when open or closed)",
            ),
        )
    ),
    ("detect_us", "time in the detector call"),
    ("classify_us", "time in the eye-state call"),
    ("aggregate_us", "time in the aggregator's own work (tracking, engine, Redis)"),
    ("latency_ms", "frame sent to result back, at the client"),
)


def state_name(state: int) -> str:
    return types_pb2.EyeState.Name(state).removeprefix("EYE_STATE_").lower()


def reason_name(reason: int) -> str:
    return types_pb2.UnknownReason.Name(reason).removeprefix("UNKNOWN_REASON_").lower() if reason else ""


def _eye(reading: aggregator_pb2.EyeReading) -> list:
    box = reading.box
    return [
        round(box.x, 1),
        round(box.y, 1),
        round(box.width, 1),
        round(box.angle_deg, 2),
        round(reading.landmarks.aperture, 4) if reading.HasField("landmarks") else "",
        round(reading.prob_open, 5) if reading.HasField("prob_open") else "",
        round(reading.prob_eye, 5) if reading.HasField("prob_eye") else "",
        state_name(reading.state),
        reason_name(reading.reason),
    ]


_NO_FACE = [
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    state_name(types_pb2.EYE_STATE_UNKNOWN),
    reason_name(types_pb2.UNKNOWN_REASON_NO_FACE),
]


class FrameTable:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow([name for name, _ in COLUMNS])

    def add(self, result: aggregator_pb2.FrameResult, latency_s: float) -> None:
        status = aggregator_pb2.FrameStatus.Name(result.status).removeprefix("FRAME_STATUS_")
        head = [result.seq, result.timestamp_us, result.stream_id, status, len(result.faces)]
        t = result.timings
        tail = [t.detect_us, t.classify_us, t.aggregate_us, round(latency_s * 1e3, 2)]
        if not result.faces:
            self._writer.writerow([*head, *[""] * 6, *_NO_FACE, *_NO_FACE, *tail])
        for face in result.faces:
            b = face.box
            box = [round(b.x, 1), round(b.y, 1), round(b.width, 1), round(b.height, 1), round(face.score, 4)]
            self._writer.writerow([*head, face.track_id, *box, *_eye(face.left_eye), *_eye(face.right_eye), *tail])

    def close(self) -> None:
        self._file.close()
