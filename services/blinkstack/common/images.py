"""`blinkstack.v1.Image` messages -> numpy images, with the limits and checks every service applies.

Every problem raises `InvalidInput` with a message that names the offending field, so servers can answer
INVALID_ARGUMENT with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import math
import re
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from blinkstack.common.errors import InvalidInput, ResourceExhausted, quoted
from blinkstack.common.image_header import HeaderError, image_size
from blinkstack.common.preprocess import ImageDecodeError, decode_image, to_gray
from blinkstack.v1 import types_pb2

MAX_ENCODED_BYTES = 4 * 1024 * 1024
MAX_SIDE = 4096
MAX_PIXELS_PER_REQUEST = MAX_SIDE * MAX_SIDE  # all images of one request together, checked before decoding
# Requests that decode more pixels than this are decoded on a worker thread, not on the event loop: a 4096x4096
# frame takes 100 ms; a 640x480 camera frame takes 0.5-0.9 ms, about what the hand-off itself costs in CPU.
INLINE_DECODE_PIXELS = 640 * 480
# Pixels all calls of one service may be decoding and holding at once (set by --decode-budget-pixels): sixteen
# legal 4096x4096 frames at once took a detector to 1 GB; two at once still ~350 MB. One of the largest frames,
# or 54 camera frames of 640x480 (bench/bench_hostile.py).
DECODE_BUDGET_PIXELS = MAX_PIXELS_PER_REQUEST
MAX_CROP_SIDE = 1024  # an eye box (or crop) side; an eye this large would sit in a face of ~2,500 pixels
_CHANNELS = {types_pb2.PIXEL_FORMAT_GRAY8: 1, types_pb2.PIXEL_FORMAT_BGR8: 3}


def _check_side(width: int, height: int, what: str) -> None:
    if width < 1 or height < 1:
        raise InvalidInput(f"{what}: width and height must be > 0 (got {width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InvalidInput(f"{what}: {width}x{height} exceeds the {MAX_SIDE}x{MAX_SIDE} limit")


def declared_size(image: types_pb2.Image, what: str) -> tuple[int, int]:
    """(width, height) the image will have, read from the PNG/JPEG header or the raw fields: no decoding."""
    kind = image.WhichOneof("data")
    if kind is None:
        raise InvalidInput(f"{what}: no image data (set `encoded` or `raw`)")
    if kind == "raw":
        return image.raw.width, image.raw.height
    if len(image.encoded) > MAX_ENCODED_BYTES:
        raise InvalidInput(f"{what}: {len(image.encoded)} encoded bytes exceed the {MAX_ENCODED_BYTES} limit")
    try:
        return image_size(image.encoded)
    except HeaderError as exc:
        raise InvalidInput(f"{what}: cannot decode {len(image.encoded)} bytes: {exc}") from None


def check_pixel_budget(
    images: list[tuple[types_pb2.Image, str]], budget: int = MAX_PIXELS_PER_REQUEST
) -> list[tuple[int, int]]:
    """The (width, height) each image declares; refused beyond `budget` pixels in all before any is decoded."""
    sizes = []
    for image, what in images:
        width, height = declared_size(image, what)
        _check_side(width, height, what)
        sizes.append((width, height))
    total = sum(width * height for width, height in sizes)
    if total > budget:
        raise InvalidInput(f"{len(images)} images of {total:,} pixels in all exceed the {budget:,} pixel limit")
    return sizes


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


# glibc keeps a freed large frame's pages in the arena of the worker thread that decoded it, one arena per
# thread: after a few 4096x4096 frames on different threads the detector held 330 MB it no longer used.
# Trimming after a large image gives them back (~1 ms).
_MALLOC_TRIM = _libc_malloc_trim()
TRIM_AFTER_PIXELS = 1024 * 1024


class PixelBudget:
    """The pixels a service's calls hold decoded at once. A call over what is left is refused at once with
    RESOURCE_EXHAUSTED (the client backs off and retries) rather than queued: a queue of large frames only turns
    into missed deadlines and memory. Calls run on one event loop, so a plain counter is enough."""

    def __init__(self, limit: int = DECODE_BUDGET_PIXELS) -> None:
        self.limit, self.used = limit, 0

    @contextlib.contextmanager
    def hold(self, pixels: int, what: str) -> Iterator[None]:
        if self.used and self.used + pixels > self.limit:
            raise ResourceExhausted(
                f"{what}: {pixels:,} pixels to decode while {self.used:,} of this service's {self.limit:,}-pixel "
                "decode budget are in use; retry shortly"
            )
        self.used += pixels
        try:
            yield
        finally:
            self.used -= pixels
            if pixels >= TRIM_AFTER_PIXELS and _MALLOC_TRIM is not None:
                _MALLOC_TRIM(0)


# One per process: every service decodes through it (ServiceHost sets the limit from --decode-budget-pixels).
DECODE_BUDGET = PixelBudget()


def decode(image: types_pb2.Image, what: str, gray: bool = False) -> np.ndarray:
    """An Image message -> HxW (gray) or HxWx3/4 (BGR/BGRA) uint8 array, or always HxW with `gray`; the size is
    checked from the header before any pixel is decoded."""
    width, height = declared_size(image, what)
    _check_side(width, height, what)
    if image.WhichOneof("data") == "encoded":
        try:
            array = decode_image(image.encoded, gray)
        except ImageDecodeError as exc:
            raise InvalidInput(f"{what}: {exc}") from None
        if array.shape[:2] != (height, width):  # the header lied; never trust the rest
            raise InvalidInput(f"{what}: decoded {array.shape[1]}x{array.shape[0]}, header said {width}x{height}")
        return array
    raw = image.raw
    if raw.format not in _CHANNELS:
        raise InvalidInput(f"{what}: raw.format must be PIXEL_FORMAT_GRAY8 or PIXEL_FORMAT_BGR8")
    channels = _CHANNELS[raw.format]
    expected = raw.width * raw.height * channels
    if len(raw.pixels) != expected:
        raise InvalidInput(
            f"{what}: raw size mismatch: {len(raw.pixels)} bytes, expected {raw.width}x{raw.height}x{channels} = "
            f"{expected} for {types_pb2.PixelFormat.Name(raw.format)}"
        )
    shape = (raw.height, raw.width) if channels == 1 else (raw.height, raw.width, channels)
    array = np.frombuffer(raw.pixels, dtype=np.uint8).reshape(shape)
    return to_gray(array) if gray else array


async def decode_off_loop(image: types_pb2.Image, what: str, gray: bool = False) -> np.ndarray:
    """`decode`, on a worker thread when the image is large enough to hold up the event loop (health checks and
    other calls keep being answered while a frame decodes)."""
    width, height = declared_size(image, what)
    if width * height > INLINE_DECODE_PIXELS:
        return await asyncio.to_thread(decode, image, what, gray)
    return decode(image, what, gray)


def box_message(x: float, y: float, width: float, height: float, angle_deg: float = 0.0) -> types_pb2.Box:
    """A protobuf Box from (x, y, width, height) and its turn, e.g. `box_message(*crop.box, crop.angle_deg)`."""
    return types_pb2.Box(x=float(x), y=float(y), width=float(width), height=float(height), angle_deg=float(angle_deg))


def centre_inside(box: types_pb2.Box, width: int, height: int) -> bool:
    """The box has a positive size and its centre lies inside a `width` x `height` frame (NaN never does)."""
    centre_x, centre_y = box.x + box.width / 2, box.y + box.height / 2
    return box.width > 0 and box.height > 0 and 0 <= centre_x < width and 0 <= centre_y < height


# An eye box is about twice the eye (its side follows the inter-ocular distance); with a quarter of it past the
# frame edge the crop's padding (replicated edge pixels) reaches the lid, which the model never saw in training.
MIN_INSIDE_SHARE = 0.75


def mostly_outside(box: types_pb2.Box, width: int, height: int) -> bool:
    """The box's centre is outside a `width` x `height` frame, or less than MIN_INSIDE_SHARE of its area is
    inside: an eye that cannot be judged."""
    if not centre_inside(box, width, height):
        return True
    inside_w = max(0.0, min(box.x + box.width, width) - max(box.x, 0.0))
    inside_h = max(0.0, min(box.y + box.height, height) - max(box.y, 0.0))
    return inside_w * inside_h < MIN_INSIDE_SHARE * box.width * box.height


def check_box(box: types_pb2.Box, width: int, height: int, what: str) -> tuple[int, int, int, int]:
    """The box's whole-pixel corners (x0, y0, x1, y1) in a `width` x `height` frame.

    The box must have a positive size, its centre inside the frame, and fit the frame and MAX_CROP_SIDE: so
    a crop never costs more than the frame it comes from.
    """
    values = (box.x, box.y, box.width, box.height, box.angle_deg)
    if not all(math.isfinite(v) for v in values):
        raise InvalidInput(f"{what}: box has a non-finite coordinate {values}")
    if abs(box.angle_deg) > 180:
        raise InvalidInput(f"{what}: box angle_deg {box.angle_deg:g} is outside -180..180")
    if box.width <= 0 or box.height <= 0:
        raise InvalidInput(f"{what}: box width and height must be > 0 (got {box.width} x {box.height})")
    if not centre_inside(box, width, height):
        raise InvalidInput(
            f"{what}: box ({box.x:g}, {box.y:g}, {box.width:g} x {box.height:g}) has its centre outside the "
            f"{width}x{height} frame"
        )
    x0, y0 = round(box.x), round(box.y)
    x1, y1 = round(box.x + box.width), round(box.y + box.height)
    if x1 <= x0 or y1 <= y0:
        raise InvalidInput(f"{what}: box is smaller than one pixel")
    if x1 - x0 > min(MAX_CROP_SIDE, width) or y1 - y0 > min(MAX_CROP_SIDE, height):
        raise InvalidInput(
            f"{what}: box of {x1 - x0}x{y1 - y0} pixels is larger than the {width}x{height} frame or the "
            f"{MAX_CROP_SIDE}-pixel limit"
        )
    return x0, y0, x1, y1


def crop(frame: np.ndarray, box: types_pb2.Box, what: str) -> np.ndarray:
    """The pixels of `box` (checked by `check_box`), rounded to whole pixels; a turned box (angle_deg != 0) is
    sampled bilinearly along its own axes, so the crop is upright in the box's frame.

    Parts of the box past the frame edge are filled by replicating the edge pixels: an eye near the border
    keeps the square geometry the model was trained on instead of being squeezed into a clipped box.
    """
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = check_box(box, width, height, what)
    if box.angle_deg:
        return _turned_crop(frame, box, x1 - x0, y1 - y0)
    inside = frame[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    pad = (max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0))
    if not any(pad):
        return inside
    return cv2.copyMakeBorder(np.ascontiguousarray(inside), *pad, cv2.BORDER_REPLICATE)


def _turned_crop(frame: np.ndarray, box: types_pb2.Box, out_width: int, out_height: int) -> np.ndarray:
    """`out_width` x `out_height` samples of the turned box: crop pixel (u, v) is the frame point at
    centre + R(angle) (scale * (u + 1/2 - out_width / 2), ...), pixel centres at half-integers on both sides."""
    angle = math.radians(box.angle_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    sx, sy = box.width / out_width, box.height / out_height
    linear = np.array([[cos * sx, -sin * sy], [sin * sx, cos * sy]])
    centre = np.array([box.x + box.width / 2, box.y + box.height / 2])
    shift = centre + linear @ np.array([0.5 - out_width / 2, 0.5 - out_height / 2]) - 0.5
    matrix = np.hstack([linear, shift[:, None]])
    return cv2.warpAffine(
        frame,
        matrix,
        (out_width, out_height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


STREAM_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def frame_timestamp(frame: types_pb2.Frame, received_us: int) -> tuple[int, bool]:
    """The frame's capture time, defaulted once at the service a client sent it to: its own `timestamp_us`, else
    `received_us` (the server's clock when the request arrived). Returns (timestamp_us, from_server). The
    aggregator forwards frames to the detector with the time set, so a frame never gets two defaults."""
    if frame.HasField("timestamp_us"):
        return frame.timestamp_us, False
    return received_us, True


def check_stream_id(stream_id: str, what: str = "stream_id", required: bool = True) -> None:
    """Stream ids name Redis keys and metrics: 1..128 characters of [A-Za-z0-9._:-]."""
    if not stream_id and not required:
        return
    if not STREAM_ID_PATTERN.fullmatch(stream_id):
        raise InvalidInput(f"{what}: {quoted(stream_id)} is not 1..128 characters of [A-Za-z0-9._:-]")
