from __future__ import annotations

import cv2
import numpy as np
import pytest

from blinkstack.common import images
from blinkstack.common.errors import ResourceExhausted
from blinkstack.common.image_header import HeaderError, image_size
from blinkstack.common.preprocess import INPUT_SHAPE, ImageDecodeError, preprocess_batch, preprocess_encoded
from blinkstack.tools.hostile import scan_bomb


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, blob = cv2.imencode(ext, image)
    assert ok
    return blob.tobytes()


_RNG = np.random.default_rng(0)
CROPS = {
    "gray64": _RNG.integers(0, 256, (64, 64), dtype=np.uint8),
    "gray24": _RNG.integers(0, 256, (24, 24), dtype=np.uint8),
    "bgr-wide": _RNG.integers(0, 256, (90, 150, 3), dtype=np.uint8),
    "bgra-odd": _RNG.integers(0, 256, (17, 9, 4), dtype=np.uint8),
    "gray16bit": _RNG.integers(0, 65536, (40, 40), dtype=np.uint16),
}
# JPEG holds neither alpha nor 16-bit samples, so those two only travel as PNG.
CASES = [(name, ".png") for name in CROPS] + [(name, ".jpg") for name in ("gray64", "gray24", "bgr-wide")]


@pytest.mark.parametrize(("name", "ext"), CASES)
def test_any_crop_becomes_standardised_model_input(name, ext):
    x = preprocess_encoded([_encode(CROPS[name], ext)])
    assert x.shape == (1, *INPUT_SHAPE) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3


def test_flat_crop_stays_finite():
    x = preprocess_batch([np.full((30, 30), 128, np.uint8)])
    assert np.isfinite(x).all() and np.allclose(x, 0.0)


@pytest.mark.parametrize("blob", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_undecodable_bytes_raise_a_clear_error(blob):
    with pytest.raises(ImageDecodeError):
        preprocess_encoded([blob])


def test_the_decode_budget_refuses_what_does_not_fit_and_frees_what_it_held():
    budget = images.PixelBudget(limit=100)
    with budget.hold(60, "first"):
        refused = pytest.raises(ResourceExhausted, match="second: 50 pixels to decode while 60 of")
        with refused, budget.hold(50, "second"):
            pass
        with budget.hold(40, "third"):
            assert budget.used == 100
    assert budget.used == 0
    with budget.hold(500, "alone"):  # one image larger than the budget still runs when nothing else does
        assert budget.used == 500
    assert budget.used == 0


def test_scans_are_counted_from_the_markers_before_decoding():
    assert image_size(scan_bomb(side=256, repeats=26)) == (256, 256)  # 32 scans: the most accepted
    with pytest.raises(HeaderError, match="a JPEG of 33 scans"):
        image_size(scan_bomb(side=256, repeats=27))
