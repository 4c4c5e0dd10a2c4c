"""The client commands: `classify`, `detect`, `events`, `stats` and `score-events` against running services."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import grpc

from blinkstack.aggregator import events as event_forms
from blinkstack.common.preprocess import decode_image
from blinkstack.common.security import client_security
from blinkstack.tools.annotate import draw_faces
from blinkstack.tools.frames_table import reason_name, state_name
from blinkstack.tools.scoring import load_spans, score
from blinkstack.v1 import (
    aggregator_pb2,
    aggregator_pb2_grpc,
    detector_pb2,
    detector_pb2_grpc,
    eyestate_pb2,
    eyestate_pb2_grpc,
    types_pb2,
)

CLASSIFY_CHUNK = 256


def classify(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    with client_security(args).channel(args.target) as channel:
        stub = eyestate_pb2_grpc.EyeStateServiceStub(channel)
        for start in range(0, len(paths), CLASSIFY_CHUNK):
            chunk = paths[start : start + CLASSIFY_CHUNK]
            request = eyestate_pb2.ClassifyEyesRequest(
                crops=eyestate_pb2.CropBatch(crops=[types_pb2.Image(encoded=p.read_bytes()) for p in chunk])
            )
            try:
                response = stub.ClassifyEyes(request, timeout=args.timeout)
            except grpc.RpcError as exc:
                print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
                return 1
            for path, result in zip(chunk, response.results, strict=True):
                why = f" ({reason_name(result.reason)})" if result.reason else ""
                print(f"{path}\t{result.prob_open:.4f}\t{state_name(result.state)}{why}")
    return 0


def detect(args: argparse.Namespace) -> int:
    path = Path(args.image)
    if not path.is_file():
        print(f"error: not a file: {path}", file=sys.stderr)
        return 2
    request = detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=types_pb2.Image(encoded=path.read_bytes())))
    with client_security(args).channel(args.target) as channel:
        try:
            response = detector_pb2_grpc.DetectorServiceStub(channel).DetectEyes(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
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


# With --follow, a subscription that ends for one of these reasons (the aggregator restarting, a subscriber dropped
# for falling behind) is re-opened after the last event shown: each event once.
RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED)


def _subscribe(args: argparse.Namespace, after: str, show: Callable[[aggregator_pb2.BlinkEvent], None]) -> None:
    """Shows the events after `after` until the call ends (without --follow, after `idle` quiet seconds)."""
    request = aggregator_pb2.SubscribeBlinksRequest(
        stream_ids=args.stream_id or [], track_ids=args.track_id or [], after_id=after
    )
    with client_security(args).channel(args.target) as channel:
        call = aggregator_pb2_grpc.AggregatorServiceStub(channel).SubscribeBlinks(request)
        timer: threading.Timer | None = None

        def quiet_timer() -> None:
            nonlocal timer
            if args.follow:
                return
            if timer is not None:
                timer.cancel()
            timer = threading.Timer(args.idle, call.cancel)
            timer.daemon = True
            timer.start()

        quiet_timer()
        try:
            for event in call:
                show(event)
                quiet_timer()
        finally:
            if timer is not None:
                timer.cancel()


def events(args: argparse.Namespace) -> int:
    printer = event_printer(args.format)
    after, delay = args.after, 0.5

    def show(event: aggregator_pb2.BlinkEvent) -> None:
        nonlocal after, delay
        printer(event)
        after, delay = event.cursor, 0.5

    while True:
        try:
            _subscribe(args, after, show)
            return 0
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return 0
            if not (args.follow and exc.code() in RESUMABLE):
                print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
                return 1
            print(
                f"warning: {exc.code().name}: {exc.details()}; resuming after {after or 'now'} in {delay:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        except KeyboardInterrupt:
            return 0
        try:
            time.sleep(delay)
        except KeyboardInterrupt:
            return 0
        delay = min(delay * 2, 10.0)


def stats(args: argparse.Namespace) -> int:
    request = aggregator_pb2.GetStatsRequest(stream_id=args.stream_id, track_id=args.track_id)
    with client_security(args).channel(args.target) as channel:
        try:
            stats = aggregator_pb2_grpc.AggregatorServiceStub(channel).GetStats(request, timeout=10)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
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
