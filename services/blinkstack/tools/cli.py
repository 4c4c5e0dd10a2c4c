"""`blinkstack`'s client tools and local orchestration, beside `serve` (which `blinkstack.cli` routes to
`blinkstack.serve` without importing anything here)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from blinkstack.aggregator import event_forms
from blinkstack.common import paths
from blinkstack.common.config import env_option
from blinkstack.common.security import ClientSecurity, add_client_security_options, client_security
from blinkstack.local import commands as local
from blinkstack.serve import add_serve_parser
from blinkstack.services import AGGREGATOR, DETECTOR, EYESTATE, ServiceSpec
from blinkstack.tools import alerts, client, progress
from blinkstack.tools.reports import write_outputs
from blinkstack.tools.watch import FrameEncoding, SourceError, default_stream_id, watch

DEMO_VIDEO = "video/eyeblink8_v8_windows.mp4"  # under the data folder (BLINKSTACK_DATA_DIR)


def _watch_source(args: argparse.Namespace) -> str:
    return str(args.camera) if args.camera is not None else args.video


def run_watch(args: argparse.Namespace, target: str, security: ClientSecurity | None = None) -> int:
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
            on_event=lambda event: progress.write(event_forms.describe(event)),
            frames_csv=out_dir / "frames.csv",
            security=security,
            retries=args.retries,
            encoding=args.encoding,
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
    print(
        f"wrote {out_dir}/summary.json, events.json, frames.csv, timeline.png"
        + (", annotated.mp4" if args.annotated else "")
    )
    if result.error:
        print(f"error: the stream ended early after {len(result.frames)} frames: {result.error}", file=sys.stderr)
        return 1
    return 0


def _frame_encoding(text: str) -> FrameEncoding:
    try:
        return FrameEncoding.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    parser.add_argument(
        "--encoding",
        type=_frame_encoding,
        default=FrameEncoding(),
        help="how frames are sent: jpeg<Q> (quality 1-100, default jpeg90) or raw (uncompressed BGR pixels)",
    )
    parser.add_argument(
        "--retries", type=int, default=5, help="UNAVAILABLE answers in a row retried (backoff 0.5 s doubling to 8 s)"
    )


def _view():
    """The live view's module: imported when used (its web server is a second of imports other commands skip)."""
    from blinkstack.tools import view

    return view


def demo_view(args: argparse.Namespace, target: str) -> int:
    """`demo --view`: the demo video through the stack, live in the browser at its own pace."""
    source = _watch_source(args)
    stream_id = args.stream_id or default_stream_id(source)
    realtime = args.realtime is not False
    return _view().serve_view(
        target, ClientSecurity(), source, stream_id, [], realtime, args.max_frames, port=args.view_port
    )


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--video", help="a video file to stream through the stack (at its frame rate)")
    source.add_argument("--camera", type=int, help="a camera index to stream through the stack")
    parser.add_argument("--feed-stream-id", help="stream id for --video/--camera (default <name>-<date-time>)")
    parser.add_argument("--stream-id", action="append", help="also show this stream, fed by someone else (repeatable)")
    parser.add_argument("--max-speed", action="store_true", help="--video as fast as the stack answers")
    parser.add_argument("--max-frames", type=int, help="stop feeding after this many frames")
    parser.add_argument("--host", default="127.0.0.1", help="address the page is served on (loopback by default)")
    parser.add_argument("--port", type=int, default=8765, help="port of the page")
    parser.add_argument(
        "--allowed-host",
        action="append",
        help="a name browsers reach the page by (Host header), besides loopback and --host (repeatable; needed "
        "with --host 0.0.0.0)",
    )
    parser.add_argument("--view-token-file", default="", help="the page asks for this file's token (once, as ?token=)")


def _client_command(
    sub: argparse._SubParsersAction,
    name: str,
    help: str,
    service: ServiceSpec,
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """A command that calls `service`: --target (default from its address variable), the TLS and token flags."""
    parser = sub.add_parser(name, help=help)
    env_option(parser, "--target", service.address_env, service.default_address(), help=f"{service.name} address")
    add_client_security_options(parser)
    parser.set_defaults(run=run)
    return parser


def _add_client_commands(sub: argparse._SubParsersAction) -> None:
    classify = _client_command(
        sub, "classify", "print prob_open and state for eye-crop image files", EYESTATE, client.classify
    )
    classify.add_argument("images", nargs="+", help="PNG/JPEG eye crops")
    classify.add_argument("--timeout", type=float, default=10.0, help="seconds per request")

    detect = _client_command(
        sub, "detect", "print the faces and eyes the detector finds in an image file", DETECTOR, client.detect
    )
    detect.add_argument("image", help="PNG/JPEG frame")
    detect.add_argument("--annotate", metavar="PNG", help="also write the frame with boxes and landmarks drawn")
    detect.add_argument("--timeout", type=float, default=10.0, help="seconds per request")

    scoring = sub.add_parser("score-events", help="event precision/recall of detected events against ground truth")
    scoring.add_argument("truth", help='JSON list of {"type", "start_us", "end_us"}')
    scoring.add_argument("detected", help="the same format (BlinkEvent JSON works: extra fields are ignored)")
    scoring.add_argument("--min-overlap", type=float, default=0.3, help="overlap / shorter duration to match")
    scoring.set_defaults(run=client.score_events)

    events = _client_command(
        sub,
        "events",
        "print events (stored ones after --after, then new ones with --follow)",
        AGGREGATOR,
        client.events,
    )
    events.add_argument(
        "--after",
        default="0",
        help='cursor (an event\'s "cursor" in --format json/csv) or event id to resume after ("0": all retained, '
        '"": only new)',
    )
    events.add_argument("--follow", action="store_true", help="keep following new events until Ctrl-C")
    events.add_argument("--idle", type=float, default=2.0, help="without --follow: stop after this many quiet seconds")
    events.add_argument("--stream-id", action="append", help="only this stream (repeatable)")
    events.add_argument("--track-id", type=int, action="append", help="only this track (repeatable)")
    events.add_argument("--format", choices=["text", "json", "csv"], default="text", help="json: JSON Lines")

    alert = _client_command(
        sub, "alerts", "forward drowsiness alerts to a webhook (at least once) or stdout", AGGREGATOR, alerts.forward
    )
    alerts.add_arguments(alert)

    stats = _client_command(sub, "stats", "a track's blink rate, PERCLOS and last event", AGGREGATOR, client.stats)
    stats.add_argument("--stream-id", required=True)
    stats.add_argument("--track-id", type=int, default=1)


def _add_stack_commands(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start Redis and the three services on this machine; Ctrl-C stops them")
    local.add_stack_options(up)
    up.set_defaults(run=local.up)

    watch = _client_command(
        sub,
        "watch",
        "stream a video or camera through TrackFrames; events, summary, plots",
        AGGREGATOR,
        lambda args: run_watch(args, args.target, client_security(args)),
    )
    _add_watch_options(watch)

    demo = sub.add_parser("demo", help="up + watch a video + down (the README's main job)")
    _add_watch_options(demo, video_default=str(paths.data_dir() / DEMO_VIDEO))
    demo.add_argument("--view", action="store_true", help="show the video live in a browser instead (Ctrl-C ends)")
    demo.add_argument("--view-port", type=int, default=8765, help="port of the live view (on 127.0.0.1)")
    local.add_stack_options(demo)
    demo.set_defaults(run=lambda args: local.demo(args, demo_view if args.view else run_watch))

    view = _client_command(
        sub,
        "view",
        "a live browser view of a running stack: video, timelines, events, stats",
        AGGREGATOR,
        lambda args: _view().run_view(args),
    )
    add_view_arguments(view)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blinkstack", description="Eye state and blink events over gRPC.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    _add_client_commands(sub)
    _add_stack_commands(sub)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args) or 0
