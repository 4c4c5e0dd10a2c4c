"""The eye-state gRPC service: `ClassifyEyes` and `GetModelInfo` over a pluggable backend.

The servicer, the builders that wire it to a backend, and `serve`; the flags are in `options.py`.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from functools import partial

import cv2
import grpc
import numpy as np

from blinkstack.common import images, metrics
from blinkstack.common.errors import InvalidInput
from blinkstack.common.grpc_server import ServiceHost, run_until_signal
from blinkstack.common.model_backend import start_or_await_ready
from blinkstack.common.preprocess import INPUT_HEIGHT, INPUT_WIDTH, preprocess_batch
from blinkstack.eyestate.backend import EyeStateBackend
from blinkstack.eyestate.options import EyeStateOptions
from blinkstack.services import EYESTATE
from blinkstack.v1 import eyestate_pb2, eyestate_pb2_grpc, types_pb2


class EyeStateServicer(eyestate_pb2_grpc.EyeStateServiceServicer):
    def __init__(
        self, backend: EyeStateBackend, threshold: float = 0.5, max_crops: int = 256, uncertain_band: float = 0.0
    ) -> None:
        if not 0.0 <= uncertain_band < 0.5:
            raise ValueError(f"uncertain_band must be in [0, 0.5) (got {uncertain_band})")
        self.backend, self.threshold, self.max_crops = backend, threshold, max_crops
        self.uncertain_band = uncertain_band

    def _check_request(self, request: eyestate_pb2.ClassifyEyesRequest) -> int:
        """Everything that can be checked before decoding: counts, image headers, boxes. Returns the pixels
        the request will decode."""
        kind = request.WhichOneof("input")
        if kind is None:
            raise InvalidInput("request has no input: set `crops` or `frame`")
        count = len(request.crops.crops) if kind == "crops" else len(request.frame.eye_boxes)
        if count == 0:
            raise InvalidInput(f"empty batch: `{kind}` holds no {'crops' if kind == 'crops' else 'eye_boxes'}")
        if count > self.max_crops:
            raise InvalidInput(f"{count} crops in one request exceed the limit of {self.max_crops}")
        if kind == "crops":
            sizes = images.check_pixel_budget([(crop, f"crops[{i}]") for i, crop in enumerate(request.crops.crops)])
            return sum(width * height for width, height in sizes)
        if not request.frame.HasField("frame"):
            raise InvalidInput("frame.frame is missing")
        ((width, height),) = images.check_pixel_budget([(request.frame.frame, "frame.frame")])
        for i, box in enumerate(request.frame.eye_boxes):
            images.check_box(box, width, height, f"frame.eye_boxes[{i}]")
        return width * height

    @staticmethod
    def _model_input(request: eyestate_pb2.ClassifyEyesRequest) -> np.ndarray:
        """Decode, crop and preprocess a checked request: the model's input batch."""
        if request.WhichOneof("input") == "crops":
            crops = (images.decode(crop, f"crops[{i}]") for i, crop in enumerate(request.crops.crops))
        else:
            frame = images.decode(request.frame.frame, "frame.frame", gray=True)  # the model sees gray crops
            crops = (images.crop(frame, box, f"frame.eye_boxes[{i}]") for i, box in enumerate(request.frame.eye_boxes))
        return preprocess_batch(crops)  # one crop at a time: generators

    def _model_ref(self) -> eyestate_pb2.ModelRef:
        info = self.backend.info
        return eyestate_pb2.ModelRef(name=info.model_name, version=info.model_version)

    async def ClassifyEyes(
        self, request: eyestate_pb2.ClassifyEyesRequest, context: grpc.aio.ServicerContext
    ) -> eyestate_pb2.ClassifyEyesResponse:
        pixels = self._check_request(request)
        with images.DECODE_BUDGET.hold(pixels, "ClassifyEyes"):
            if pixels > images.INLINE_DECODE_PIXELS:  # off the event loop: health keeps answering
                batch = await asyncio.to_thread(self._model_input, request)
            else:
                batch = self._model_input(request)
        readings = await self.backend.infer(batch, timeout=context.time_remaining())
        metrics.EYESTATE_CROPS.labels(self.backend.info.name).inc(len(readings))
        results = [self.result(float(prob_open), float(prob_eye)) for prob_open, prob_eye in readings]
        for state, count in Counter(r.state for r in results).items():
            metrics.EYESTATE_STATES.labels(types_pb2.EyeState.Name(state).removeprefix("EYE_STATE_")).inc(count)
        return eyestate_pb2.ClassifyEyesResponse(results=results, model=self._model_ref())

    def result(self, prob_open: float, prob_eye: float) -> eyestate_pb2.EyeStateResult:
        """One crop's answer: UNKNOWN when it is not an eye or prob_open sits in the uncertain band."""
        result = eyestate_pb2.EyeStateResult(prob_open=prob_open)
        if not math.isnan(prob_eye):
            result.prob_eye = prob_eye
        if prob_eye < 0.5:  # False for NaN: no gate, no verdict
            result.state, result.reason = types_pb2.EYE_STATE_UNKNOWN, types_pb2.UNKNOWN_REASON_NOT_AN_EYE
        elif abs(prob_open - self.threshold) < self.uncertain_band:
            result.state, result.reason = types_pb2.EYE_STATE_UNKNOWN, types_pb2.UNKNOWN_REASON_MODEL_UNCERTAIN
        else:
            result.state = types_pb2.EYE_STATE_OPEN if prob_open >= self.threshold else types_pb2.EYE_STATE_CLOSED
        return result

    async def GetModelInfo(
        self, request: eyestate_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> eyestate_pb2.ModelInfo:
        info = self.backend.info
        return eyestate_pb2.ModelInfo(
            model=self._model_ref(),
            backend=info.name,
            input_height=INPUT_HEIGHT,
            input_width=INPUT_WIDTH,
            threshold=self.threshold,
            max_crops_per_request=self.max_crops,
            sha256=info.sha256,
        )


def build_backend(options: EyeStateOptions) -> EyeStateBackend:
    model = options.backend
    if model.backend == "triton":
        from blinkstack.eyestate.triton_backend import TritonBackend

        backend = TritonBackend.from_options(model)
        if not options.gate:
            backend.gate = None
        return backend
    from blinkstack.eyestate.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(
        model.repository,
        model.model_name,
        model.pinned_version,
        threads=model.threads,
        max_batch=options.max_batch,
        max_delay_s=options.max_delay_ms / 1000.0,
        providers=model.providers,
        inline_max_crops=options.inline_max_crops,
        run_batch=options.run_batch,
        gate=options.gate,
    )


def build_host(options: EyeStateOptions, backend: EyeStateBackend) -> ServiceHost:
    servicer = EyeStateServicer(
        backend, threshold=options.threshold, max_crops=options.max_crops, uncertain_band=options.uncertain_band
    )
    register = partial(eyestate_pb2_grpc.add_EyeStateServiceServicer_to_server, servicer)
    return ServiceHost(options.server, EYESTATE, register, backend.ready)


async def serve(options: EyeStateOptions) -> None:
    # Crops are tiny: waking OpenCV's thread pool for each resize costs more than it saves (~2x per crop).
    cv2.setNumThreads(1)
    backend = build_backend(options)
    await start_or_await_ready(backend)
    await run_until_signal(build_host(options, backend), backend.close)
