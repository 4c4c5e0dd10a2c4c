"""The detector gRPC service: `DetectEyes` (one frame) and `StreamDetectEyes` (a camera), with tracking.

The servicer, the builders that wire it to the front end's models, and `serve`; the flags are in `options.py`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

import grpc
import numpy as np

from blinkstack.common import images, metrics
from blinkstack.common.backend_options import BackendOptions
from blinkstack.common.errors import InvalidInput
from blinkstack.common.grpc_server import ServiceHost, run_until_signal
from blinkstack.common.model_backend import start_or_await_ready
from blinkstack.common.preprocess import to_gray
from blinkstack.common.security import require_stream
from blinkstack.common.tracking import Tracker
from blinkstack.detector import adapters, geometry
from blinkstack.detector.backend import ModelBackend
from blinkstack.detector.face_models import FaceDetector, FaceLandmarker
from blinkstack.detector.faces import FACE_POINTS, Eye, EyeOutline, Face
from blinkstack.detector.front_end import FrontEnd, FrontEndModels
from blinkstack.detector.onnxruntime_backend import OnnxRuntimeBackend
from blinkstack.detector.options import DetectorOptions
from blinkstack.detector.triton_backend import TritonBackend
from blinkstack.services import DETECTOR
from blinkstack.v1 import detector_pb2, detector_pb2_grpc, types_pb2


@dataclass
class StreamState:
    """What the detector keeps per stream: its face source and the track ids."""

    front_end: FrontEnd
    tracker: Tracker = field(default_factory=Tracker)


class StreamPool:
    """The state of the streams that use unary DetectEyes, least recently used evicted beyond `max_streams`."""

    def __init__(self, models: FrontEndModels, max_streams: int) -> None:
        self._streams: OrderedDict[str, StreamState] = OrderedDict()
        self._models, self._max_streams = models, max_streams

    def get(self, stream_id: str) -> StreamState:
        state = self._streams.pop(stream_id, None) or StreamState(self._models.stream())
        self._streams[stream_id] = state
        while len(self._streams) > self._max_streams:
            self._streams.popitem(last=False)
        return state


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


def add_eye_crops(pixels: np.ndarray, faces: list[detector_pb2.FaceDetection]) -> None:
    """Each judgeable eye's pixels (those marked unjudgeable get none)."""
    for face in faces:
        for eye in (face.left_eye, face.right_eye):
            crop = None if eye.unjudgeable else eye_crop(pixels, eye.box)
            if crop is not None:
                eye.crop.CopyFrom(crop)


def eye_landmarks(outline: EyeOutline) -> types_pb2.EyeLandmarks:
    message = types_pb2.EyeLandmarks(
        outer_corner=_point(outline.outer_corner),
        inner_corner=_point(outline.inner_corner),
        upper_lid=[_point(p) for p in outline.upper_lid],
        lower_lid=[_point(p) for p in outline.lower_lid],
        aperture=outline.aperture,
    )
    if outline.iris_centre is not None:
        message.iris_center.CopyFrom(_point(outline.iris_centre))
    return message


def eye_message(eye: Eye, which: types_pb2.Eye) -> detector_pb2.EyeDetection:
    box = images.box_message(*eye.crop.box, eye.crop.angle_deg)
    message = detector_pb2.EyeDetection(eye=which, center=_point(eye.centre), box=box)
    if eye.outline is not None:
        message.landmarks.CopyFrom(eye_landmarks(eye.outline))
    return message


def face_message(face: Face, track_id: int) -> detector_pb2.FaceDetection:
    x0, y0, x1, y1 = face.box
    return detector_pb2.FaceDetection(
        track_id=track_id,
        box=images.box_message(x0, y0, x1 - x0, y1 - y0),
        score=face.score,
        left_eye=eye_message(face.left_eye, types_pb2.EYE_LEFT),
        right_eye=eye_message(face.right_eye, types_pb2.EYE_RIGHT),
        landmarks=[_point(face.points[name]) for name in FACE_POINTS],
    )


class DetectorServicer(detector_pb2_grpc.DetectorServiceServicer):
    def __init__(
        self, models: FrontEndModels, max_streams: int = 1024, judgeable: geometry.Judgeable = geometry.JUDGEABLE
    ) -> None:
        self.models, self.judgeable = models, judgeable
        self.streams = StreamPool(models, max_streams)

    async def _detect(
        self, request: detector_pb2.DetectEyesRequest, state: StreamState | None, context: grpc.aio.ServicerContext
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
        ((width, height),) = images.check_pixel_budget([(frame.image, "frame.image")])
        with images.DECODE_BUDGET.hold(width * height, "DetectEyes"):  # the frame's pixels live to the reply
            return await self._detect_pixels(request, state, context, received_us)

    async def _detect_pixels(
        self,
        request: detector_pb2.DetectEyesRequest,
        state: StreamState | None,
        context: grpc.aio.ServicerContext,
        received_us: int,
    ) -> detector_pb2.DetectEyesResponse:
        frame = request.frame
        # Luma only: the face models see it as gray RGB (their landmarks agree with colour frames' to 0.006 of the
        # eye distance on ZJU dev) and the eye crops are gray anyway; a gray JPEG decode skips the colour work.
        pixels = await images.decode_off_loop(frame.image, "frame.image", gray=True)
        front_end = state.front_end if state is not None else self.models.stream()
        faces, times, tracked = await front_end.faces(pixels, timeout=context.time_remaining())
        for stage, seconds in vars(times).items():
            if seconds:
                metrics.DETECTOR_STAGE_SECONDS.labels(stage).observe(seconds)
        metrics.DETECTOR_FACES.observe(len(faces))
        metrics.DETECTOR_FRAMES.inc()
        if state is not None and frame.stream_id:
            ids = state.tracker.update(np.array([f.box for f in faces]).reshape(-1, 4))
        else:  # no stream named: no tracking (the aggregator, which tracks faces itself, durably, names none)
            ids = list(range(1, len(faces) + 1))
        messages = [face_message(face, track_id) for face, track_id in zip(faces, ids, strict=True)]
        self.judgeable.mark(messages, pixels.shape[1], pixels.shape[0])
        if request.eye_crops:
            add_eye_crops(pixels, messages)
        timestamp, from_server = images.frame_timestamp(frame, received_us)
        return detector_pb2.DetectEyesResponse(
            stream_id=frame.stream_id,
            seq=frame.seq,
            timestamp_us=timestamp,
            timestamp_from_server=from_server,
            frame_width=pixels.shape[1],
            frame_height=pixels.shape[0],
            faces=messages,
            landmarks_tracked=tracked,
        )

    async def DetectEyes(
        self, request: detector_pb2.DetectEyesRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectEyesResponse:
        stream_id = request.frame.stream_id
        return await self._detect(request, self.streams.get(stream_id) if stream_id else None, context)

    async def StreamDetectEyes(
        self, request_iterator: AsyncIterator[detector_pb2.DetectEyesRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[detector_pb2.DetectEyesResponse]:
        state = StreamState(self.models.stream())
        async for request in request_iterator:
            yield await self._detect(request, state, context)


def _backend(options: BackendOptions) -> ModelBackend:
    if options.backend == "triton":
        return TritonBackend.from_options(options)
    return OnnxRuntimeBackend(
        options.repository, options.model_name, options.pinned_version, options.threads, options.providers
    )


def build_backend(options: DetectorOptions) -> FrontEndModels:
    """The front end's models on their backends."""
    detector_adapter, landmark_adapter = adapters.adapters_for(options.front_end, options.adapter)
    detector = FaceDetector(detector_adapter, _backend(options.face_detector), options.min_face_px)
    landmarker = None
    if landmark_adapter is not None:
        landmarker = FaceLandmarker(landmark_adapter, _backend(options.face_landmarks), options.min_face_px)
    return FrontEndModels(detector, landmarker, options.detect_every, options.max_faces)


def build_host(options: DetectorOptions, models: FrontEndModels) -> ServiceHost:
    servicer = DetectorServicer(models, max_streams=options.max_streams, judgeable=options.judgeable)
    register = partial(detector_pb2_grpc.add_DetectorServiceServicer_to_server, servicer)
    return ServiceHost(options.server, DETECTOR, register, models.ready)


async def serve(options: DetectorOptions) -> None:
    models = build_backend(options)
    await start_or_await_ready(models)
    await run_until_signal(build_host(options, models), models.close)
