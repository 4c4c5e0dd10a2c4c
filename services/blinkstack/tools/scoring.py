"""Event-level accuracy: detected events against ground truth, matched by temporal overlap.

A detected event matches a true event of the same type when their intervals overlap by at least
`min_overlap` of the shorter one; each event matches at most once (greedy, largest overlap first). Per type:
precision = matched detections / detections, recall = matched truths / truths. Only ENDED events count (a
STARTED long closure is the same event reported early).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Span:
    type: str  # BLINK, WINK_LEFT, WINK_RIGHT, LONG_CLOSURE
    start_us: int
    end_us: int


def overlap_fraction(a: Span, b: Span) -> float:
    inter = min(a.end_us, b.end_us) - max(a.start_us, b.start_us)
    shorter = max(1, min(a.end_us - a.start_us, b.end_us - b.start_us))
    return max(0.0, inter / shorter)


def score(detected: list[Span], truth: list[Span], min_overlap: float = 0.3) -> dict[str, dict[str, float]]:
    """Per event type: true positives, detections, truths, precision, recall (1.0 when there is nothing to find)."""
    report = {}
    for kind in sorted({s.type for s in detected} | {s.type for s in truth}):
        found = [s for s in detected if s.type == kind]
        real = [s for s in truth if s.type == kind]
        pairs = sorted(
            ((overlap_fraction(d, t), i, j) for i, d in enumerate(found) for j, t in enumerate(real)), reverse=True
        )
        used_d, used_t = set(), set()
        for fraction, i, j in pairs:
            if fraction < min_overlap:
                break
            if i not in used_d and j not in used_t:
                used_d.add(i)
                used_t.add(j)
        matched = len(used_d)
        report[kind] = {
            "matched": matched,
            "detected": len(found),
            "truth": len(real),
            "precision": matched / len(found) if found else 1.0,
            "recall": matched / len(real) if real else 1.0,
        }
    return report


def load_spans(path: Path) -> list[Span]:
    """A JSON list of {"type", "start_us", "end_us"} (extra fields, e.g. a BlinkEvent's, are ignored)."""
    items = json.loads(Path(path).read_text())
    return [Span(i["type"].removeprefix("EVENT_TYPE_"), int(i["start_us"]), int(i["end_us"])) for i in items]
