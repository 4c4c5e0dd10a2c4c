"""The eye-state gRPC service: `ClassifyEyes` and `GetModelInfo` over a pluggable backend."""

from __future__ import annotations

import argparse

import cv2
import grpc
import numpy as np

from blinkstack.common import images, metrics
from blinkstack.common.backend import BackendUnavailable, start_or_await_ready
from blinkstack.common.backend_options import add_backend_options, backend_options
from blinkstack.common.config import env_option
from blinkstack.common.grpc_server import ServiceHost, add_server_options, run_until_signal, settings_from_args
from blinkstack.common.model_repository import EYE_STATE_MODEL
from blinkstack.common.preprocess import INPUT_HEIGHT, INPUT_WIDTH, preprocess_batch
from blinkstack.eyestate.backend import EyeStateBackend
from blinkstack.v1 import eyestate_pb2, eyestate_pb2_grpc, types_pb2

SERVICE_NAME = eyestate_pb2.DESCRIPTOR.services_by_name["EyeStateService"].full_name
DEFAULT_PORT, DEFAULT_METRICS_PORT = 50052, 9102


class EyeStateServicer(eyestate_pb2_grpc.EyeStateServiceServicer):
    def __init__(self, backend: EyeStateBackend, threshold: float = 0.5, max_crops: int = 256) -> None:
        self.backend, self.threshold, self.max_crops = backend, threshold, max_crops

    def _decode_request(self, request: eyestate_pb2.ClassifyEyesRequest) -> list[np.ndarray]:
        kind = request.WhichOneof("input")
        if kind is None:
            raise images.InvalidInput("request has no input: set `crops` or `frame`")
        if kind == "crops":
            count, items = len(request.crops.crops), request.crops.crops
        else:
            count, items = len(request.frame.eye_boxes), request.frame.eye_boxes
        if count == 0:
            raise images.InvalidInput(f"empty batch: `{kind}` holds no {'crops' if kind == 'crops' else 'eye_boxes'}")
        if count > self.max_crops:
            raise images.InvalidInput(f"{count} crops in one request exceed the limit of {self.max_crops}")
        if kind == "crops":
            return [images.decode(crop, f"crops[{i}]") for i, crop in enumerate(items)]
        if not request.frame.HasField("frame"):
            raise images.InvalidInput("frame.frame is missing")
        frame = images.decode(request.frame.frame, "frame.frame")
        return [images.crop(frame, box, f"frame.eye_boxes[{i}]") for i, box in enumerate(items)]

    def _model_ref(self) -> eyestate_pb2.ModelRef:
        info = self.backend.info
        return eyestate_pb2.ModelRef(name=info.model_name, version=info.model_version)

    @metrics.instrumented("eyestate")
    async def ClassifyEyes(
        self, request: eyestate_pb2.ClassifyEyesRequest, context: grpc.aio.ServicerContext
    ) -> eyestate_pb2.ClassifyEyesResponse:
        try:
            batch = preprocess_batch(self._decode_request(request))
        except images.InvalidInput as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            probs = await self.backend.infer(batch, timeout=context.time_remaining())
        except BackendUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        metrics.EYESTATE_CROPS.labels(self.backend.info.name).inc(len(probs))
        open_, closed = types_pb2.EYE_STATE_OPEN, types_pb2.EYE_STATE_CLOSED
        results = [
            eyestate_pb2.EyeStateResult(prob_open=float(p), state=open_ if p >= self.threshold else closed)
            for p in probs
        ]
        return eyestate_pb2.ClassifyEyesResponse(results=results, model=self._model_ref())

    @metrics.instrumented("eyestate")
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser, "EYESTATE", DEFAULT_PORT, DEFAULT_METRICS_PORT)
    add_backend_options(parser, "EYESTATE", EYE_STATE_MODEL)
    group = parser.add_argument_group("eye-state")
    env_option(
        group,
        "--threshold",
        "BLINKSTACK_EYESTATE_THRESHOLD",
        0.5,
        float,
        help="prob_open at or above which an eye is OPEN",
    )
    env_option(group, "--max-crops", "BLINKSTACK_EYESTATE_MAX_CROPS", 256, int, help="most crops per request")
    env_option(
        group, "--max-batch", "BLINKSTACK_EYESTATE_MAX_BATCH", 256, int, help="largest micro-batch (onnxruntime)"
    )
    env_option(
        group,
        "--max-delay-ms",
        "BLINKSTACK_EYESTATE_MAX_DELAY_MS",
        0.0,
        float,
        help="wait this long to fill a micro-batch (onnxruntime)",
    )
    env_option(
        group,
        "--run-batch",
        "BLINKSTACK_EYESTATE_RUN_BATCH",
        32,
        int,
        help="crops per ONNX Runtime run; micro-batches run in chunks of this size (32 suits CPU caches; "
        "raise it to --max-batch on GPU providers)",
    )
    env_option(
        group,
        "--inline-max-crops",
        "BLINKSTACK_EYESTATE_INLINE_MAX_CROPS",
        4,
        int,
        help="a request of at most this many crops on an otherwise idle server runs at once on the event loop, "
        "single-threaded (onnxruntime on CPU; 0: always batch on the worker thread)",
    )


def build_backend(args: argparse.Namespace) -> EyeStateBackend:
    options = backend_options(args)
    if options.backend == "triton":
        from blinkstack.eyestate.triton_backend import TritonBackend

        return TritonBackend.from_options(options)
    from blinkstack.eyestate.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(
        options.repository,
        options.model_name,
        options.pinned_version,
        threads=options.threads,
        max_batch=args.max_batch,
        max_delay_s=args.max_delay_ms / 1000.0,
        providers=options.providers,
        inline_max_crops=args.inline_max_crops,
        run_batch=args.run_batch,
    )


def build_host(args: argparse.Namespace, backend: EyeStateBackend) -> ServiceHost:
    servicer = EyeStateServicer(backend, threshold=args.threshold, max_crops=args.max_crops)
    return ServiceHost(
        settings_from_args(args),
        [SERVICE_NAME],
        lambda server: eyestate_pb2_grpc.add_EyeStateServiceServicer_to_server(servicer, server),
        backend.ready,
    )


async def serve(args: argparse.Namespace) -> None:
    # Crops are tiny: waking OpenCV's thread pool for each resize costs more than it saves (~2x per crop).
    cv2.setNumThreads(1)
    backend = build_backend(args)
    await start_or_await_ready(backend)
    await run_until_signal(build_host(args, backend), backend.close)
