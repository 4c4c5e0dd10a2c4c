"""`blinkstack.v1.Image` messages -> numpy images, with the limits and checks every service applies.

Every problem raises `InvalidInput` with a message that names the offending field, so servers can answer
INVALID_ARGUMENT with it.
"""

from __future__ import annotations

import math
import re

import cv2
import numpy as np

from blinkstack.common.errors import InvalidInput
from blinkstack.common.preprocess import ImageDecodeError, decode_image
from blinkstack.v1 import types_pb2

MAX_ENCODED_BYTES = 4 * 1024 * 1024
MAX_SIDE = 4096
_CHANNELS = {types_pb2.PIXEL_FORMAT_GRAY8: 1, types_pb2.PIXEL_FORMAT_BGR8: 3}


def _check_side(width: int, height: int, what: str) -> None:
    if width < 1 or height < 1:
        raise InvalidInput(f"{what}: width and height must be > 0 (got {width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InvalidInput(f"{what}: {width}x{height} exceeds the {MAX_SIDE}x{MAX_SIDE} limit")


def decode(image: types_pb2.Image, what: str) -> np.ndarray:
    """An Image message -> HxW (gray) or HxWx3/4 (BGR/BGRA) uint8 array."""
    kind = image.WhichOneof("data")
    if kind is None:
        raise InvalidInput(f"{what}: no image data (set `encoded` or `raw`)")
    if kind == "encoded":
        if len(image.encoded) > MAX_ENCODED_BYTES:
            raise InvalidInput(f"{what}: {len(image.encoded)} encoded bytes exceed the {MAX_ENCODED_BYTES} limit")
        try:
            array = decode_image(image.encoded)
        except ImageDecodeError as exc:
            raise InvalidInput(f"{what}: {exc}") from None
        _check_side(array.shape[1], array.shape[0], what)
        return array
    raw = image.raw
    if raw.format not in _CHANNELS:
        raise InvalidInput(f"{what}: raw.format must be PIXEL_FORMAT_GRAY8 or PIXEL_FORMAT_BGR8")
    _check_side(raw.width, raw.height, what)
    channels = _CHANNELS[raw.format]
    expected = raw.width * raw.height * channels
    if len(raw.pixels) != expected:
        raise InvalidInput(
            f"{what}: raw size mismatch: {len(raw.pixels)} bytes, expected {raw.width}x{raw.height}x{channels} = "
            f"{expected} for {types_pb2.PixelFormat.Name(raw.format)}"
        )
    shape = (raw.height, raw.width) if channels == 1 else (raw.height, raw.width, channels)
    return np.frombuffer(raw.pixels, dtype=np.uint8).reshape(shape)


def box_message(x: float, y: float, width: float, height: float) -> types_pb2.Box:
    """A protobuf Box from (x, y, width, height), e.g. `box_message(*eye.box)`."""
    return types_pb2.Box(x=float(x), y=float(y), width=float(width), height=float(height))


def centre_inside(box: types_pb2.Box, width: int, height: int) -> bool:
    """The box has a positive size and its centre lies inside a `width` x `height` frame (NaN never does)."""
    centre_x, centre_y = box.x + box.width / 2, box.y + box.height / 2
    return box.width > 0 and box.height > 0 and 0 <= centre_x < width and 0 <= centre_y < height


def crop(frame: np.ndarray, box: types_pb2.Box, what: str) -> np.ndarray:
    """The pixels of `box`, rounded to whole pixels.

    The box must have a positive size and its centre must lie inside the frame. Parts of it past the frame edge
    are filled by replicating the edge pixels: an eye near the border keeps the square geometry the model was
    trained on instead of being squeezed into a clipped box.
    """
    values = (box.x, box.y, box.width, box.height)
    if not all(math.isfinite(v) for v in values):
        raise InvalidInput(f"{what}: box has a non-finite coordinate {values}")
    if box.width <= 0 or box.height <= 0:
        raise InvalidInput(f"{what}: box width and height must be > 0 (got {box.width} x {box.height})")
    height, width = frame.shape[:2]
    if not centre_inside(box, width, height):
        raise InvalidInput(
            f"{what}: box ({box.x:g}, {box.y:g}, {box.width:g} x {box.height:g}) has its centre outside the "
            f"{width}x{height} frame"
        )
    x0, y0 = round(box.x), round(box.y)
    x1, y1 = round(box.x + box.width), round(box.y + box.height)
    if x1 <= x0 or y1 <= y0:
        raise InvalidInput(f"{what}: box is smaller than one pixel")
    if x1 - x0 > 2 * MAX_SIDE or y1 - y0 > 2 * MAX_SIDE:
        raise InvalidInput(f"{what}: box of {x1 - x0}x{y1 - y0} pixels exceeds the limit of {2 * MAX_SIDE}")
    inside = frame[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    pad = (max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0))
    if not any(pad):
        return inside
    return cv2.copyMakeBorder(np.ascontiguousarray(inside), *pad, cv2.BORDER_REPLICATE)


STREAM_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def check_stream_id(stream_id: str, what: str = "stream_id", required: bool = True) -> None:
    """Stream ids name Redis keys and metrics: 1..128 characters of [A-Za-z0-9._:-]."""
    if not stream_id and not required:
        return
    if not STREAM_ID_PATTERN.fullmatch(stream_id):
        raise InvalidInput(f"{what}: {stream_id!r} is not 1..128 characters of [A-Za-z0-9._:-]")
