"""Request builders and reply readers for the services' messages."""

from __future__ import annotations

import numpy as np

from blinkstack.v1 import detector_pb2, eyestate_pb2, types_pb2


def raw_frame(frame: np.ndarray) -> types_pb2.Image:
    height, width = frame.shape[:2]
    pixel_format = types_pb2.PIXEL_FORMAT_GRAY8 if frame.ndim == 2 else types_pb2.PIXEL_FORMAT_BGR8
    return types_pb2.Image(
        raw=types_pb2.RawImage(pixels=frame.tobytes(), width=width, height=height, format=pixel_format)
    )


def detect_request(
    image: types_pb2.Image, stream_id: str = "", seq: int = 0, **fields: object
) -> detector_pb2.DetectEyesRequest:
    return detector_pb2.DetectEyesRequest(frame=types_pb2.Frame(image=image, stream_id=stream_id, seq=seq, **fields))


def encoded_request(blobs: list[bytes]) -> eyestate_pb2.ClassifyEyesRequest:
    return eyestate_pb2.ClassifyEyesRequest(
        crops=eyestate_pb2.CropBatch(crops=[types_pb2.Image(encoded=b) for b in blobs])
    )


def probs_of(response: eyestate_pb2.ClassifyEyesResponse) -> np.ndarray:
    return np.array([r.prob_open for r in response.results], dtype=np.float32)
