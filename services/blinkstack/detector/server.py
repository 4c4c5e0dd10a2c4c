"""The detector gRPC service: `DetectEyes` (one frame) and `StreamDetectEyes` (a camera), with tracking.

The servicer, the builders that wire it to a backend, and `serve`; the flags are in `options.py`.
"""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from functools import partial

import grpc
import numpy as np

from blinkstack.common import images, metrics
from blinkstack.common.backend import start_or_await_ready
from blinkstack.common.backend_options import backend_options
from blinkstack.common.errors import InvalidInput
from blinkstack.common.grpc_server import ServiceHost, run_until_signal, settings_from_args
from blinkstack.common.preprocess import to_gray
from blinkstack.common.security import require_stream
from blinkstack.common.tracking import Tracker
from blinkstack.detector.backend import FaceDetectorBackend, OnnxRuntimeDetector, TritonDetector
from blinkstack.detector.engine import Face, FaceDetector
from blinkstack.detector.landmark_flow import LandmarkFlow
from blinkstack.services import DETECTOR
from blinkstack.v1 import detector_pb2, detector_pb2_grpc, types_pb2


class TrackerPool:
    """Trackers of the streams that use unary DetectEyes, least recently used evicted beyond `max_streams`."""

    def __init__(self, max_streams: int) -> None:
        self._trackers: OrderedDict[str, Tracker] = OrderedDict()
        self._max_streams = max_streams

    def get(self, stream_id: str) -> Tracker:
        tracker = self._trackers.pop(stream_id, None) or Tracker()
        self._trackers[stream_id] = tracker
        while len(self._trackers) > self._max_streams:
            self._trackers.popitem(last=False)
        return tracker


def _point(xy: np.ndarray) -> types_pb2.Point:
    return types_pb2.Point(x=float(xy[0]), y=float(xy[1]))


def eye_crop(pixels: np.ndarray, box: types_pb2.Box) -> types_pb2.Image | None:
    """The eye's pixels as raw gray, as the eye-state service would cut them from the frame; None where it would
    refuse the box."""
    try:
        gray = np.ascontiguousarray(to_gray(images.crop(pixels, box, "eye box")))
    except InvalidInput:
        return None
    raw = types_pb2.RawImage(
        pixels=gray.tobytes(), width=gray.shape[1], height=gray.shape[0], format=types_pb2.PIXEL_FORMAT_GRAY8
    )
    return types_pb2.Image(raw=raw)


def mark_unjudgeable(faces: list[detector_pb2.FaceDetection], width: int, height: int) -> None:
    """EYE_OUTSIDE_FRAME for eyes centred outside the frame or mostly outside it."""
    for face in faces:
        for eye in (face.left_eye, face.right_eye):
            if images.mostly_outside(eye.box, width, height):
                eye.unjudgeable = types_pb2.UNKNOWN_REASON_EYE_OUTSIDE_FRAME


def add_eye_crops(pixels: np.ndarray, faces: list[detector_pb2.FaceDetection]) -> None:
    """Each judgeable eye's pixels (those marked unjudgeable get none)."""
    for face in faces:
        for eye in (face.left_eye, face.right_eye):
            crop = None if eye.unjudgeable else eye_crop(pixels, eye.box)
            if crop is not None:
                eye.crop.CopyFrom(crop)


def face_message(face: Face, track_id: int) -> detector_pb2.FaceDetection:
    x0, y0, x1, y1 = face.box
    return detector_pb2.FaceDetection(
        track_id=track_id,
        box=images.box_message(x0, y0, x1 - x0, y1 - y0),
        score=face.score,
        left_eye=detector_pb2.EyeDetection(
            eye=types_pb2.EYE_LEFT, center=_point(face.left_eye.centre), box=images.box_message(*face.left_eye.box)
        ),
        right_eye=detector_pb2.EyeDetection(
            eye=types_pb2.EYE_RIGHT, center=_point(face.right_eye.centre), box=images.box_message(*face.right_eye.box)
        ),
        landmarks=[_point(p) for p in face.landmarks[2:]],
    )


class DetectorServicer(detector_pb2_grpc.DetectorServiceServicer):
    def __init__(self, detector: FaceDetector, max_streams: int = 1024, detect_every: int = 1) -> None:
        if detect_every < 1:
            raise ValueError(f"--detect-every must be >= 1 (got {detect_every})")
        self.detector, self.detect_every = detector, detect_every
        self.trackers = TrackerPool(max_streams)

    async def _detect(
        self,
        request: detector_pb2.DetectEyesRequest,
        tracker: Tracker | None,
        context: grpc.aio.ServicerContext,
        flow: LandmarkFlow | None = None,
    ) -> detector_pb2.DetectEyesResponse:
        received_us = time.time_ns() // 1000
        frame = request.frame
        if not request.HasField("frame"):
            raise InvalidInput("request has no frame")
        images.check_stream_id(frame.stream_id, "frame.stream_id", required=False)
        if frame.stream_id:
            require_stream(frame.stream_id, "frame.stream_id")
        if not frame.HasField("image"):
            raise InvalidInput("frame.image is missing")
        pixels = await images.decode_off_loop(frame.image, "frame.image")
        if flow is None:
            faces, times = await self.detector.detect(pixels, timeout=context.time_remaining())
            tracked = False
        else:
            faces, times, tracked = await flow.detect(self.detector, pixels, timeout=context.time_remaining())
        stages = ("flow",) if tracked else ("prepare", "infer", "decode")
        for stage in stages:
            metrics.DETECTOR_STAGE_SECONDS.labels(stage).observe(getattr(times, stage))
        metrics.DETECTOR_FACES.observe(len(faces))
        metrics.DETECTOR_FRAMES.inc()
        if tracker is not None:
            ids = tracker.update(np.array([f.box for f in faces]).reshape(-1, 4))
        else:
            ids = list(range(1, len(faces) + 1))
        messages = [face_message(face, track_id) for face, track_id in zip(faces, ids, strict=True)]
        mark_unjudgeable(messages, pixels.shape[1], pixels.shape[0])
        if request.eye_crops:
            add_eye_crops(pixels, messages)
        has_timestamp = frame.HasField("timestamp_us")
        return detector_pb2.DetectEyesResponse(
            stream_id=frame.stream_id,
            seq=frame.seq,
            timestamp_us=frame.timestamp_us if has_timestamp else received_us,
            timestamp_from_server=not has_timestamp,
            frame_width=pixels.shape[1],
            frame_height=pixels.shape[0],
            faces=messages,
            landmarks_tracked=tracked,
        )

    async def DetectEyes(
        self, request: detector_pb2.DetectEyesRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectEyesResponse:
        stream_id = request.frame.stream_id
        return await self._detect(request, self.trackers.get(stream_id) if stream_id else None, context)

    async def StreamDetectEyes(
        self, request_iterator: AsyncIterator[detector_pb2.DetectEyesRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[detector_pb2.DetectEyesResponse]:
        tracker = Tracker()
        flow = LandmarkFlow(self.detect_every) if self.detect_every > 1 else None
        async for request in request_iterator:
            yield await self._detect(request, tracker, context, flow)


def build_backend(args: argparse.Namespace) -> FaceDetectorBackend:
    options = backend_options(args)
    if options.backend == "triton":
        return TritonDetector.from_options(options)
    return OnnxRuntimeDetector(
        options.repository, options.model_name, options.pinned_version, options.threads, options.providers
    )


def build_host(args: argparse.Namespace, backend: FaceDetectorBackend) -> ServiceHost:
    detector = FaceDetector(backend, args.input_width, args.score_threshold, min_face_px=args.min_face_px)
    servicer = DetectorServicer(detector, args.max_streams, args.detect_every)
    register = partial(detector_pb2_grpc.add_DetectorServiceServicer_to_server, servicer)
    return ServiceHost(settings_from_args(args), DETECTOR, register, backend.ready)


async def serve(args: argparse.Namespace) -> None:
    backend = build_backend(args)
    host = build_host(args, backend)  # validates the settings before anything starts
    await start_or_await_ready(backend)
    await run_until_signal(host, backend.close)
