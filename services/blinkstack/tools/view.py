"""`blinkstack view`: a live browser view of a running stack.

A Starlette app (served by uvicorn) on loopback by default, with one page and one server-sent-events stream
(sse-starlette) that carries three kinds of messages:
- `frame`: the annotated frame of a stream this view feeds itself (`--video FILE` or `--camera N`, through
  TrackFrames like `watch`), with each face's per-eye prob_open and state for the scrolling timelines;
- `event`: every event of the shown streams, from SubscribeBlinks (also of streams others feed: `--stream-id`);
- `stats`: each track's blinks/min, PERCLOS and drowsiness level from GetStats, every second.
The page draws the timelines with uPlot (vendored under `view_static/vendor`, MIT): nothing is loaded from the
internet. The gRPC work runs on threads; the `Hub` hands their messages to the event loop, and each browser
gets a bounded queue, so a slow browser loses frames, never the stack's time.

Who may look: requests must name an allowed host in their Host header (Starlette's TrustedHostMiddleware;
loopback names and `--host` by default, `--allowed-host` adds more), which defeats DNS rebinding (a web page that
makes a browser's request to 127.0.0.1 under its own name gets 400). With `--view-token-file`, opening
`/?token=<token>` once sets a cookie (HttpOnly, SameSite=Strict) that every request then needs; without it: 401.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from blinkstack.aggregator import event_forms
from blinkstack.client import BlinkstackError, Client
from blinkstack.common.security import ClientSecurity, client_security, read_secret
from blinkstack.tools.annotate import draw_faces
from blinkstack.tools.frames_table import reason_name, state_name
from blinkstack.tools.watch import default_stream_id, watch
from blinkstack.v1 import aggregator_pb2

log = logging.getLogger("blinkstack.view")
STATIC = Path(__file__).parent / "view_static"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "blinkstack_view"
CLIENT_QUEUE = 64  # messages a browser may fall behind before frames are dropped for it
FRAME_WIDTH = 480  # frames are sent scaled to this width: a live view, not an archive


class Hub:
    """Messages from the gRPC threads to every connected browser, and the latest of each for late joiners."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: set[asyncio.Queue] = set()
        self.latest: dict[str, dict] = {}  # per (kind, stream[, track]): the last message, replayed on connect
        self.events: list[dict] = []  # the last events, replayed on connect

    def publish(self, kind: str, data: dict, key: str) -> None:
        """From any thread."""
        message = {"event": kind, "data": json.dumps(data)}
        if kind == "event":
            self.events = [*self.events[-49:], message]
        else:
            self.latest[f"{kind}/{key}"] = message
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._fan_out, message)

    def _fan_out(self, message: dict) -> None:
        for queue in self.clients:
            self._offer(queue, message)

    @staticmethod
    def _offer(queue: asyncio.Queue, message: dict) -> None:
        """A browser that is behind skips frames; other messages push out its oldest one."""
        if queue.full() and message["event"] == "frame":
            return
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(message)

    async def stream(self, request: Request) -> AsyncIterator[dict]:
        self.loop = asyncio.get_running_loop()  # the gRPC threads hand their messages to this loop
        queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE)
        for message in [*self.latest.values(), *self.events]:
            self._offer(queue, message)
        self.clients.add(queue)
        try:
            while not await request.is_disconnected():
                try:
                    yield await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    continue
        finally:
            self.clients.discard(queue)


def frame_message(stream_id: str, pixels: np.ndarray, result: aggregator_pb2.FrameResult) -> dict:
    """The annotated frame (JPEG, base64) and what the timelines need."""
    image = draw_faces(pixels, list(result.faces))
    scale = FRAME_WIDTH / image.shape[1]
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])[1].tobytes()

    def eye(reading: aggregator_pb2.EyeReading) -> dict:
        prob = reading.prob_open if reading.HasField("prob_open") else None
        aperture = reading.landmarks.aperture if reading.HasField("landmarks") else None
        state, reason = state_name(reading.state), reason_name(reading.reason)
        return {"prob_open": prob, "aperture": aperture, "state": state, "reason": reason}

    faces = [{"track_id": f.track_id, "left": eye(f.left_eye), "right": eye(f.right_eye)} for f in result.faces]
    return {
        "stream_id": stream_id,
        "seq": result.seq,
        "t": result.timestamp_us / 1e6,
        "jpeg": base64.b64encode(jpeg).decode(),
        "faces": faces,
    }


class Feeds:
    """The gRPC side: the stream this view feeds, the event subscription and the stats poller."""

    def __init__(self, hub: Hub, target: str, security: ClientSecurity, streams: list[str]) -> None:
        self.hub, self.target, self.security, self.streams = hub, target, security, streams
        self.tracks: set[tuple[str, int]] = set()
        self.stopping = threading.Event()

    def feed(self, source: str, stream_id: str, realtime: bool, max_frames: int | None) -> None:
        def on_frame(pixels: np.ndarray, result: aggregator_pb2.FrameResult) -> None:
            self.tracks.update((stream_id, face.track_id) for face in result.faces)
            self.hub.publish("frame", frame_message(stream_id, pixels, result), stream_id)

        result = watch(source, self.target, stream_id, realtime=realtime, max_frames=max_frames, progress=False,
                       on_frame=on_frame, security=self.security)  # fmt: skip
        log.info("%s: %d frames, %s", stream_id, len(result.frames), result.error or "done")

    def subscribe(self) -> None:
        """Every event of the shown streams, from now on; the subscription resumes from the last cursor by itself
        after transient errors (blinkstack.client), and after any other error a second later."""
        after = ""

        def warn(error: BlinkstackError, delay: float) -> None:
            log.warning("event subscription: %s; resuming in %.1f s", error, delay)

        with Client(self.target, self.security) as client:
            while not self.stopping.is_set():
                try:
                    for event in client.subscribe(after, self.streams, on_resume=warn):
                        after = event.cursor
                        self.tracks.add((event.stream_id, event.track_id))
                        data = {**event_forms.to_json(event), "text": event_forms.describe(event)}
                        self.hub.publish("event", data, event.id)
                except BlinkstackError as exc:
                    if not self.stopping.is_set():
                        log.warning("event subscription: %s; retrying", exc)
                self.stopping.wait(1.0)

    def poll_stats(self) -> None:
        with Client(self.target, self.security, timeout_s=2.0, retries=0) as client:
            while not self.stopping.wait(1.0):
                for stream_id, track_id in sorted(self.tracks):
                    try:
                        stats = client.get_stats(stream_id, track_id)
                    except BlinkstackError:
                        continue
                    level = aggregator_pb2.DrowsinessLevel.Name(stats.drowsiness).removeprefix("DROWSINESS_LEVEL_")
                    data = {
                        "stream_id": stream_id,
                        "track_id": track_id,
                        "blinks_per_minute": round(stats.blinks_per_minute, 1),
                        "perclos": round(stats.perclos, 3),
                        "mean_blink_ms": round(stats.mean_blink_duration_ms),
                        "drowsiness": level,
                    }
                    self.hub.publish("stats", data, f"{stream_id}/{track_id}")


class TokenGate:
    """Every request needs the view's token: as `?token=` (answered with a cookie and a redirect to the same page
    without it, so the token leaves the address bar) or as that cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            response = RedirectResponse(request.url.remove_query_params("token").path, status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
        elif hmac.compare_digest(request.cookies.get(TOKEN_COOKIE, "").encode(), self.token.encode()):
            await self.app(scope, receive, send)
        else:
            await PlainTextResponse("this view needs its token: open /?token=<token>", 401)(scope, receive, send)


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """Host header names the view answers: loopback, the address it listens on (unless a wildcard), `extra`."""
    wildcard = host in ("0.0.0.0", "::", "")
    if wildcard and not extra:
        raise ValueError(
            f"--host {host or 'any'} listens on every address: say which name browsers use with --allowed-host "
            "(one or more), so that pages of other sites cannot read the view through DNS rebinding"
        )
    names = [*LOOPBACK_NAMES, *([] if wildcard else [host]), *extra]
    return [f"[{n}]" if ":" in n and not n.startswith("[") else n for n in dict.fromkeys(names)]


def build_app(hub: Hub, hosts: list[str] | None = None, token: str = "") -> Starlette:
    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def stream(request: Request) -> EventSourceResponse:
        return EventSourceResponse(hub.stream(request), ping=10)

    routes = [Route("/", index), Route("/stream", stream), Mount("/static", StaticFiles(directory=STATIC))]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts or list(LOOPBACK_NAMES))]
    if token:
        middleware.append(Middleware(TokenGate, token=token))
    return Starlette(routes=routes, middleware=middleware)


def serve_view(
    target: str,
    security: ClientSecurity,
    source: str | None,
    fed: str | None,
    shown: list[str],
    realtime: bool,
    max_frames: int | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    extra_hosts: list[str] | None = None,
    token: str = "",
) -> int:
    """Serve the page until Ctrl-C; feed `source` (a file or camera index) as stream `fed`, and show `shown`."""
    try:
        hosts = allowed_hosts(host, extra_hosts or [])
    except ValueError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    streams = [*shown, *([fed] if fed else [])]
    hub = Hub()
    feeds = Feeds(hub, target, security, streams)
    workers = [
        threading.Thread(target=feeds.subscribe, daemon=True),
        threading.Thread(target=feeds.poll_stats, daemon=True),
    ]
    if source:
        workers.append(threading.Thread(target=feeds.feed, args=(source, fed, realtime, max_frames), daemon=True))
    if host not in LOOPBACK_NAMES and not token:
        print(f"warning: serving the view on {host} without --view-token-file: anyone who reaches it sees the video")
    print(f"live view at http://{host}:{port}/ (streams: {', '.join(streams)}; Ctrl-C stops it)", flush=True)
    for worker in workers:
        worker.start()
    try:
        uvicorn.run(build_app(hub, hosts, token), host=host, port=port, log_level="warning", lifespan="off")
    except KeyboardInterrupt:  # uvicorn hands Ctrl-C on after its own shutdown
        pass
    finally:
        feeds.stopping.set()
    return 0


def run_view(args: argparse.Namespace) -> int:
    """`blinkstack view`."""
    source = str(args.camera) if args.camera is not None else args.video
    if not source and not args.stream_id:
        print("error: nothing to show: give --video, --camera or --stream-id", flush=True)
        return 2
    fed = (args.feed_stream_id or default_stream_id(source)) if source else None
    realtime = args.camera is not None or not args.max_speed
    try:
        token = read_secret(args.view_token_file, "--view-token-file") if args.view_token_file else ""
    except ValueError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return serve_view(
        args.target,
        client_security(args),
        source,
        fed,
        args.stream_id or [],
        realtime,
        args.max_frames,
        args.host,
        args.port,
        args.allowed_host or [],
        token,
    )
