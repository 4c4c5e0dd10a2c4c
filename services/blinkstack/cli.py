"""`blinkstack`: serve a service, or talk to one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import cv2
import grpc

from blinkstack.aggregator import server as aggregator_server
from blinkstack.common.config import env_option
from blinkstack.detector import server as detector_server
from blinkstack.eyestate import server as eyestate_server
from blinkstack.v1 import detector_pb2, detector_pb2_grpc, eyestate_pb2, eyestate_pb2_grpc, types_pb2

CLASSIFY_CHUNK = 256


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="blinkstack", description="Eye state and blink events over gRPC.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one service in the foreground")
    services = serve.add_subparsers(dest="service", required=True)
    eyestate = services.add_parser("eyestate", help="ClassifyEyes over ONNX Runtime (embedded) or Triton")
    eyestate_server.add_arguments(eyestate)
    eyestate.set_defaults(run=lambda a: asyncio.run(eyestate_server.serve(a)))

    detector = services.add_parser("detector", help="DetectEyes: faces, eye boxes and track ids (CenterFace)")
    detector_server.add_arguments(detector)
    detector.set_defaults(run=lambda a: asyncio.run(detector_server.serve(a)))

    aggregator = services.add_parser("aggregator", help="blink events per subject, in Redis; TrackFrames etc.")
    aggregator_server.add_arguments(aggregator)
    aggregator.set_defaults(run=lambda a: asyncio.run(aggregator_server.serve(a)))

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

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(args.run(args) or 0)


if __name__ == "__main__":
    main()
