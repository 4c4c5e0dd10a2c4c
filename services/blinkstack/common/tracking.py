"""Per-stream face tracking: stable track ids across frames by IoU / centre-distance matching.

Each frame's faces are matched greedily (best overlap first) to the live tracks: a pair matches when the boxes
overlap by at least `min_iou`, or, for fast motion, when the centres lie within `max_centre_shift` face widths.
Unmatched faces start new tracks; ids count up from 1 and are never reused within a stream. A track that has
not been matched for more than `max_missed` frames ends, so a face that leaves and comes back gets a new id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # x0, y0, x1, y1
    missed: int = 0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [N, 4] and [M, 4] boxes (x0, y0, x1, y1)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Tracker:
    min_iou: float = 0.3
    max_centre_shift: float = 0.5
    max_missed: int = 15
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def _affinity(self, boxes: np.ndarray) -> np.ndarray:
        """[tracks, faces] matching score: IoU, or a small positive score for a close centre; <= 0 never matches."""
        previous = np.stack([t.box for t in self.tracks])
        iou = iou_matrix(previous, boxes)
        centre_prev = (previous[:, :2] + previous[:, 2:]) / 2
        centre_new = (boxes[:, :2] + boxes[:, 2:]) / 2
        shift = np.linalg.norm(centre_prev[:, None] - centre_new[None], axis=2)
        width = np.maximum(previous[:, 2] - previous[:, 0], 1e-6)[:, None]
        close = shift <= self.max_centre_shift * width
        return np.where(iou >= self.min_iou, iou, np.where(close, 1e-3 * (1 - shift / width), 0.0))

    def update(self, boxes: np.ndarray) -> list[int]:
        """Boxes [N, 4] of one frame -> their track ids, in the same order."""
        ids = [0] * len(boxes)
        matched_tracks: set[int] = set()
        if self.tracks and len(boxes):
            affinity = self._affinity(boxes)
            for flat in np.argsort(-affinity, axis=None):
                t, f = np.unravel_index(flat, affinity.shape)
                if affinity[t, f] <= 0:
                    break
                if t in matched_tracks or ids[f]:
                    continue
                matched_tracks.add(int(t))
                track = self.tracks[t]
                track.box, track.missed = boxes[f].copy(), 0
                ids[f] = track.track_id
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for f, box in enumerate(boxes):
            if not ids[f]:
                self.tracks.append(Track(self.next_id, box.copy()))
                ids[f] = self.next_id
                self.next_id += 1
        return ids

    def to_json(self) -> str:
        """Tracks and the next id, for callers that keep tracking state outside the process (the aggregator)."""
        tracks = [[t.track_id, [float(v) for v in t.box], t.missed] for t in self.tracks]
        return json.dumps({"tracks": tracks, "next_id": self.next_id}, separators=(",", ":"))

    def restore(self, text: str) -> None:
        raw = json.loads(text)
        self.tracks = [Track(i, np.array(box), missed) for i, box, missed in raw["tracks"]]
        self.next_id = raw["next_id"]

    @property
    def track_ids(self) -> set[int]:
        return {t.track_id for t in self.tracks}
