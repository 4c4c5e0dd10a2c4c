"""The client commands: `classify`, `detect`, `events`, `stats` and `score-events` against running services."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2

from blinkstack.aggregator import event_forms
from blinkstack.client import BlinkstackError, Client
from blinkstack.common.preprocess import decode_image
from blinkstack.common.security import client_security
from blinkstack.tools.annotate import draw_faces
from blinkstack.tools.scoring import load_spans, score
from blinkstack.v1 import (
    aggregator_pb2,
)

CLASSIFY_CHUNK = 256


def classify(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    with Client(args.target, client_security(args), timeout_s=args.timeout) as client:
        for start in range(0, len(paths), CLASSIFY_CHUNK):
            chunk = paths[start : start + CLASSIFY_CHUNK]
            try:
                result = client.classify_eyes([p.read_bytes() for p in chunk])
            except BlinkstackError as exc:
                print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
                return 1
            for path, prob, state, reason in zip(chunk, result.prob_open, result.states, result.reasons, strict=True):
                print(f"{path}\t{prob:.4f}\t{state.lower()}{f' ({reason.lower()})' if reason else ''}")
    return 0


def detect(args: argparse.Namespace) -> int:
    path = Path(args.image)
    if not path.is_file():
        print(f"error: not a file: {path}", file=sys.stderr)
        return 2
    with Client(args.target, client_security(args), timeout_s=args.timeout) as client:
        try:
            response = client.detect_eyes(path.read_bytes())
        except BlinkstackError as exc:
            print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
            return 1
    print(f"{path}: {response.frame_width}x{response.frame_height}, {len(response.faces)} face(s)")
    for face in response.faces:
        b = face.box
        print(
            f"face {face.track_id}: score {face.score:.3f} box x={b.x:.1f} y={b.y:.1f} w={b.width:.1f} h={b.height:.1f}"
        )
        for name, eye in (("left", face.left_eye), ("right", face.right_eye)):
            e = eye.box
            lids = (
                f" turned {e.angle_deg:.1f} deg, lid aperture {eye.landmarks.aperture:.3f}"
                if eye.HasField("landmarks")
                else ""
            )
            print(
                f"  {name} eye: centre ({eye.center.x:.1f}, {eye.center.y:.1f}) "
                f"box x={e.x:.1f} y={e.y:.1f} side={e.width:.1f}{lids}"
            )
    if args.annotate:
        image = draw_faces(decode_image(path.read_bytes()), list(response.faces))
        if not cv2.imwrite(args.annotate, image):
            print(f"error: could not write {args.annotate}", file=sys.stderr)
            return 1
        print(f"wrote {args.annotate}")
    return 0


def score_events(args: argparse.Namespace) -> int:
    try:
        truth, detected = load_spans(Path(args.truth)), load_spans(Path(args.detected))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind, r in score(detected, truth, args.min_overlap).items():
        print(
            f"{kind:13s} precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
            f"matched {r['matched']} of {r['detected']} detected, {r['truth']} true"
        )
    return 0


def event_printer(fmt: str) -> Callable[[aggregator_pb2.BlinkEvent], None]:
    """Prints one event per line: `text` for people, `json` (JSON Lines) or `csv` (with a header) for scripts."""
    if fmt == "json":
        return lambda event: print(json.dumps(event_forms.to_json(event)), flush=True)
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(event_forms.to_json(aggregator_pb2.BlinkEvent())))
        writer.writeheader()

        def write(event: aggregator_pb2.BlinkEvent) -> None:
            writer.writerow(event_forms.to_json(event))
            sys.stdout.flush()

        return write
    return lambda event: print(event_forms.describe(event), flush=True)


def events(args: argparse.Namespace) -> int:
    """The stored events after --after, then (with --follow) live ones until interrupted; without --follow it ends
    after --idle quiet seconds. A subscription that ends for a transient reason is resumed after the last event
    shown (blinkstack.client), so each event is shown once."""
    printer = event_printer(args.format)
    shown = args.after  # the cursor after the last event shown: where a resumed subscription carries on

    def warn(error: BlinkstackError, delay: float) -> None:
        print(f"warning: {error}; resuming after {shown or 'now'} in {delay:.1f} s", file=sys.stderr, flush=True)

    with Client(args.target, client_security(args)) as client:
        subscription = client.subscribe(
            args.after,
            args.stream_id or [],
            args.track_id or [],
            idle_s=None if args.follow else args.idle,
            on_resume=warn,
        )
        try:
            for event in subscription:
                printer(event)
                shown = event.cursor
        except BlinkstackError as exc:
            print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
    return 0


def stats(args: argparse.Namespace) -> int:
    with Client(args.target, client_security(args)) as client:
        try:
            stats = client.get_stats(args.stream_id, args.track_id)
        except BlinkstackError as exc:
            print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
            return 1
    print(f"stream {stats.stream_id} track {stats.track_id}, last {stats.window_us / 1e6:.0f} s:")
    print(
        f"  blinks {stats.blink_count} ({stats.blinks_per_minute:.1f}/min), mean {stats.mean_blink_duration_ms:.0f} ms"
    )
    print(f"  PERCLOS {stats.perclos:.3f}, eyes open {stats.open_ratio:.1%} of the time")
    print(f"  drowsiness {aggregator_pb2.DrowsinessLevel.Name(stats.drowsiness).removeprefix('DROWSINESS_LEVEL_')}")
    if stats.HasField("last_event"):
        print(f"  last event: {event_forms.describe(stats.last_event)}")
    return 0
