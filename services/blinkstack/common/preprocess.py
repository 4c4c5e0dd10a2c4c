"""The one eye-crop preprocessing path: decode -> grayscale -> resize -> normalise.

Training, evaluation, the export parity gate and the eye-state service all import this module, so a crop
is turned into model input the same way everywhere.

Input geometry: 32x32, square. Both training sources are square crops centred on the eye (MRL: 52-299 px
originals, stored at <= 64 px; CEW: 24x24), and the detector will cut square boxes centred on the eye
landmark with a side proportional to the inter-ocular distance. A wide OCEC-style 24x40 input would force
us to stretch every square crop by 5/3 horizontally, or to train on crops that contain no eyelid context
on the sides. 32 px keeps the eyelid detail of the larger MRL crops (downscaled with area averaging) and
only mildly upsamples the 24 px CEW patches.

Normalisation: per-crop standardisation (zero mean, unit std). Infrared close-ups and visible-light
webcam patches differ mostly in global brightness and contrast; removing both per crop is what lets one
model serve both, and it removes the mean-intensity shortcut that sensor-specific exposure would offer.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

INPUT_HEIGHT = 32
INPUT_WIDTH = 32
INPUT_SHAPE = (1, INPUT_HEIGHT, INPUT_WIDTH)

# A flat crop (std ~ 0) would otherwise blow sensor noise up to unit variance.
MIN_STD = 4.0


class ImageDecodeError(ValueError):
    """The bytes are not a decodable PNG/JPEG image."""


def decode_image(data: bytes, gray: bool = False) -> np.ndarray:
    """Decode PNG/JPEG bytes into a uint8 array (HxW gray or HxWxC BGR/BGRA); with `gray`, HxW luma only (a JPEG's
    Y channel, without the colour conversion: what the detector and the eye-state model look at)."""
    if not data:
        raise ImageDecodeError("empty image bytes")
    flags = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None:
        raise ImageDecodeError(f"cannot decode {len(data)} bytes as PNG/JPEG")
    if image.dtype != np.uint8:
        # 16-bit PNGs: keep the most significant byte, as an 8-bit camera would.
        image = np.right_shift(image, 8).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
    return image


def to_gray(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) uint8 -> HxW uint8."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"unsupported image shape {image.shape}")


def resize_to_input(gray: np.ndarray) -> np.ndarray:
    """Resize a gray crop to the model's HxW; area averaging when shrinking, bilinear when enlarging."""
    height, width = gray.shape
    if height < 1 or width < 1:
        raise ValueError(f"empty crop {gray.shape}")
    if (height, width) == (INPUT_HEIGHT, INPUT_WIDTH):
        return gray
    shrinking = height * width > INPUT_HEIGHT * INPUT_WIDTH
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=interpolation)


def normalize(crops: np.ndarray) -> np.ndarray:
    """uint8 or float [..., H, W] crops in 0..255 -> float32 standardised per crop, same shape."""
    # One float32 copy, centred and scaled in place, with sums rather than x.mean / x.std: 3x (one crop) to
    # 6x (a batch) faster, which matters because the service preprocesses per request, in Python.
    shape = np.shape(crops)
    x = np.array(crops, dtype=np.float32).reshape(-1, shape[-2] * shape[-1])
    pixels = x.shape[1]
    x -= x.sum(axis=1, keepdims=True) / pixels
    std = np.sqrt((x * x).sum(axis=1, keepdims=True) / pixels)
    x /= np.maximum(std, MIN_STD)
    return x.reshape(shape)


def crop_to_gray_input(image: np.ndarray) -> np.ndarray:
    """Any decoded crop (gray/BGR/BGRA, any size) -> HxW uint8 at the model's input size."""
    return resize_to_input(to_gray(image))


def preprocess_batch(images: Iterable[np.ndarray]) -> np.ndarray:
    """Decoded crops of any sizes -> model input [N, 1, H, W] float32. Each crop is shrunk to the input size as it
    comes: given a generator, at most one large crop exists at a time (256 boxes of 1024x1024 would be 256 MB)."""
    gray = [crop_to_gray_input(image) for image in images]
    stacked = np.stack(gray) if gray else np.empty((0, INPUT_HEIGHT, INPUT_WIDTH), np.uint8)
    return normalize(stacked)[:, None, :, :]


def preprocess_encoded(blobs: list[bytes]) -> np.ndarray:
    """PNG/JPEG bytes -> model input [N, 1, H, W] float32."""
    return preprocess_batch([decode_image(blob) for blob in blobs])
