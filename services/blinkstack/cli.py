"""`blinkstack`: serve a service, or talk to one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import cv2
import grpc

from blinkstack.aggregator import server as aggregator_server
from blinkstack.common.config import env_option
from blinkstack.detector import server as detector_server
from blinkstack.eyestate import server as eyestate_server
from blinkstack.stack import DEFAULT_DATA_DIR, Stack, StackConfig, StackError
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
DEMO_VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "video" / "eyeblink8_v8_windows.mp4"


def _classify(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    with grpc.insecure_channel(args.target) as channel:
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
                state = types_pb2.EyeState.Name(result.state).removeprefix("EYE_STATE_").lower()
                print(f"{path}\t{result.prob_open:.4f}\t{state}")
    return 0


def _detect(args: argparse.Namespace) -> int:
    path = Path(args.image)
    if not path.is_file():
        print(f"error: not a file: {path}", file=sys.stderr)
        return 2
    request = detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=types_pb2.Image(encoded=path.read_bytes())))
    with grpc.insecure_channel(args.target) as channel:
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
            print(
                f"  {name} eye: centre ({eye.center.x:.1f}, {eye.center.y:.1f}) "
                f"box x={e.x:.1f} y={e.y:.1f} side={e.width:.1f}"
            )
    if args.annotate:
        from blinkstack.annotate import draw_faces
        from blinkstack.common.preprocess import decode_image

        image = draw_faces(decode_image(path.read_bytes()), list(response.faces))
        if not cv2.imwrite(args.annotate, image):
            print(f"error: could not write {args.annotate}", file=sys.stderr)
            return 1
        print(f"wrote {args.annotate}")
    return 0


def _score_events(args: argparse.Namespace) -> int:
    from blinkstack.aggregator.scoring import load_spans, score

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


def _stack_config(args: argparse.Namespace) -> StackConfig:
    return StackConfig(
        host=args.host,
        detector_port=args.detector_port,
        eyestate_port=args.eyestate_port,
        aggregator_port=args.aggregator_port,
        redis_port=args.redis_port,
        metrics=not args.no_metrics,
        data_dir=Path(args.data_dir),
        triton_url=args.triton or "",
        with_triton=args.with_triton,
    )


def _add_stack_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("stack")
    group.add_argument("--host", default="127.0.0.1", help="address every component listens on")
    group.add_argument("--detector-port", type=int, default=50051)
    group.add_argument("--eyestate-port", type=int, default=50052)
    group.add_argument("--aggregator-port", type=int, default=50053)
    group.add_argument("--redis-port", type=int, default=6379)
    group.add_argument("--no-metrics", action="store_true", help="no Prometheus ports (9101-9103)")
    group.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="Redis AOF and the components' logs")
    triton = group.add_mutually_exclusive_group()
    triton.add_argument("--triton", metavar="URL", help="eye-state service uses this Triton (gRPC host:port)")
    triton.add_argument("--with-triton", action="store_true", help="start a local Triton and use it")


def _up(args: argparse.Namespace) -> int:
    stack = Stack(_stack_config(args))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, address in stack.endpoints().items():
        print(f"{name:11s} {address}")
    print(f"logs in {Path(args.data_dir) / 'logs'}; stack ready (Ctrl-C stops it)", flush=True)
    try:
        while not stopping.wait(0.5):
            for service in stack.services:
                if service.process.poll() is not None:
                    print(f"error: {service.name} exited with code {service.process.returncode}", file=sys.stderr)
                    return 1
    finally:
        print("stopping", flush=True)
        stack.stop()
    return 0


def _watch_source(args: argparse.Namespace) -> str:
    return str(args.camera) if args.camera is not None else args.video


def _run_watch(args: argparse.Namespace, target: str) -> int:
    # Client-tool imports stay out of `blinkstack serve`: the service image installs only `.[cpu]`, without tqdm.
    from tqdm import tqdm

    from blinkstack.watch import SourceError, default_stream_id, describe_event, watch, write_outputs

    source = _watch_source(args)
    stream_id = args.stream_id or default_stream_id(source)
    out_dir = Path(args.out) if args.out else Path("runs") / "watch" / stream_id
    try:
        result = watch(
            source,
            target,
            stream_id,
            realtime=args.realtime,
            max_frames=args.max_frames,
            annotated=out_dir / "annotated.mp4" if args.annotated else None,
            on_event=lambda event: tqdm.write(describe_event(event)),
        )
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not result.frames:
        print(f"error: {result.error or 'no frame came back'} (is the stack up at {target}?)", file=sys.stderr)
        return 1
    summary = write_outputs(result, out_dir)  # also after an error: the frames processed so far are kept
    print(
        f"{summary['frames']} frames ({summary['frames_with_one_face']} with one face) in "
        f"{summary['wall_seconds']:.1f} s "
        f"= {summary['frames_per_s']:.1f} frames/s; blinks {summary['blinks']}, winks "
        f"{summary['winks_left']}/{summary['winks_right']}, long closures {summary['long_closures']}, "
        f"{summary['blinks_per_minute']:.1f} blinks/min, PERCLOS {summary['perclos']:.3f}"
    )
    print(f"wrote {out_dir}/summary.json, events.json, timeline.png" + (", annotated.mp4" if args.annotated else ""))
    if result.error:
        print(f"error: the stream ended early after {len(result.frames)} frames: {result.error}", file=sys.stderr)
        return 1
    return 0


def _watch(args: argparse.Namespace) -> int:
    return _run_watch(args, args.target)


def _demo(args: argparse.Namespace) -> int:
    """up + watch + down: the README's main job."""
    stack = Stack(_stack_config(args))
    try:
        stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print("stack ready: " + ", ".join(f"{k} {v}" for k, v in stack.endpoints().items()), flush=True)
        return _run_watch(args, stack.config.address(stack.config.aggregator_port))
    finally:
        stack.stop()


def _add_watch_options(parser: argparse.ArgumentParser, video_default: str | None = None) -> None:
    source = parser.add_mutually_exclusive_group(required=video_default is None)
    source.add_argument("--video", default=video_default, help="video file")
    source.add_argument("--camera", type=int, help="OpenCV camera index")
    parser.add_argument("--stream-id", help="default: <video name>-<date-time> (reuse one to continue a stream)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=None, help="at the source's rate")
    pace.add_argument("--max-speed", dest="realtime", action="store_false", help="as fast as the stack answers")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--out", help="output folder (default runs/watch/<stream id>)")
    parser.add_argument("--annotated", action="store_true", help="also write annotated.mp4")


def _events(args: argparse.Namespace) -> int:
    from blinkstack.watch import describe_event

    request = aggregator_pb2.SubscribeBlinksRequest(
        stream_ids=args.stream_id or [], track_ids=args.track_id or [], after_id=args.after
    )
    with grpc.insecure_channel(args.target) as channel:
        call = aggregator_pb2_grpc.AggregatorServiceStub(channel).SubscribeBlinks(request)
        timer: threading.Timer | None = None

        def quiet_timer() -> None:  # without --follow: stop once no event came for `idle` seconds
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
                print(describe_event(event), flush=True)
                quiet_timer()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
                return 1
        except KeyboardInterrupt:
            pass
        finally:
            if timer is not None:
                timer.cancel()
    return 0


def _stats(args: argparse.Namespace) -> int:
    from blinkstack.watch import describe_event

    request = aggregator_pb2.GetStatsRequest(stream_id=args.stream_id, track_id=args.track_id)
    with grpc.insecure_channel(args.target) as channel:
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
    if stats.HasField("last_event"):
        print(f"  last event: {describe_event(stats.last_event)}")
    return 0


def _serve(server_module: ModuleType) -> Callable[[argparse.Namespace], int]:
    """`blinkstack serve X`: run the server; a setting it refuses at start-up is one error line and exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            asyncio.run(server_module.serve(args))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="blinkstack", description="Eye state and blink events over gRPC.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one service in the foreground")
    services = serve.add_subparsers(dest="service", required=True)
    eyestate = services.add_parser("eyestate", help="ClassifyEyes over ONNX Runtime (embedded) or Triton")
    eyestate_server.add_arguments(eyestate)
    eyestate.set_defaults(run=_serve(eyestate_server))

    detector = services.add_parser("detector", help="DetectEyes: faces, eye boxes and track ids (CenterFace)")
    detector_server.add_arguments(detector)
    detector.set_defaults(run=_serve(detector_server))

    aggregator = services.add_parser("aggregator", help="blink events per subject, in Redis; TrackFrames etc.")
    aggregator_server.add_arguments(aggregator)
    aggregator.set_defaults(run=_serve(aggregator_server))

    classify = sub.add_parser("classify", help="print prob_open and state for eye-crop image files")
    classify.add_argument("images", nargs="+", help="PNG/JPEG eye crops")
    env_option(
        classify,
        "--target",
        "BLINKSTACK_EYESTATE_ADDR",
        f"127.0.0.1:{eyestate_server.DEFAULT_PORT}",
        help="eye-state service address",
    )
    classify.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    classify.set_defaults(run=_classify)

    detect = sub.add_parser("detect", help="print the faces and eyes the detector finds in an image file")
    detect.add_argument("image", help="PNG/JPEG frame")
    env_option(
        detect,
        "--target",
        "BLINKSTACK_DETECTOR_ADDR",
        f"127.0.0.1:{detector_server.DEFAULT_PORT}",
        help="detector service address",
    )
    detect.add_argument("--annotate", metavar="PNG", help="also write the frame with boxes and landmarks drawn")
    detect.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    detect.set_defaults(run=_detect)

    scoring = sub.add_parser("score-events", help="event precision/recall of detected events against ground truth")
    scoring.add_argument("truth", help='JSON list of {"type", "start_us", "end_us"}')
    scoring.add_argument("detected", help="the same format (BlinkEvent JSON works: extra fields are ignored)")
    scoring.add_argument("--min-overlap", type=float, default=0.3, help="overlap / shorter duration to match")
    scoring.set_defaults(run=_score_events)

    up = sub.add_parser("up", help="start Redis and the three services on this machine; Ctrl-C stops them")
    _add_stack_options(up)
    up.set_defaults(run=_up)

    watch = sub.add_parser("watch", help="stream a video or camera through TrackFrames; events, summary, plots")
    _add_watch_options(watch)
    env_option(watch, "--target", "BLINKSTACK_AGGREGATOR_ADDR", "127.0.0.1:50053", help="aggregator address")
    watch.set_defaults(run=_watch)

    demo = sub.add_parser("demo", help="up + watch a video + down (the README's main job)")
    _add_watch_options(demo, video_default=str(DEMO_VIDEO))
    _add_stack_options(demo)
    demo.set_defaults(run=_demo)

    events = sub.add_parser("events", help="print events (stored ones after --after, then new ones with --follow)")
    env_option(events, "--target", "BLINKSTACK_AGGREGATOR_ADDR", "127.0.0.1:50053", help="aggregator address")
    events.add_argument("--after", default="0", help='event id to resume after ("0": all retained, "": only new)')
    events.add_argument("--follow", action="store_true", help="keep following new events until Ctrl-C")
    events.add_argument("--idle", type=float, default=2.0, help="without --follow: stop after this many quiet seconds")
    events.add_argument("--stream-id", action="append", help="only this stream (repeatable)")
    events.add_argument("--track-id", type=int, action="append", help="only this track (repeatable)")
    events.set_defaults(run=_events)

    stats = sub.add_parser("stats", help="a track's blink rate, PERCLOS and last event")
    env_option(stats, "--target", "BLINKSTACK_AGGREGATOR_ADDR", "127.0.0.1:50053", help="aggregator address")
    stats.add_argument("--stream-id", required=True)
    stats.add_argument("--track-id", type=int, default=1)
    stats.set_defaults(run=_stats)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(args.run(args) or 0)


if __name__ == "__main__":
    main()
