"""Training and serving feed the model the same input."""

from __future__ import annotations

import numpy as np

from blinkstack.common import preprocess
from blinkstack.common.preprocess import preprocess_encoded
from blinkstack_train import data


def test_training_path_equals_serving_path(prepared):
    """Training decodes and caches uint8 crops, then normalises; serving does it in one call. Same numbers."""
    frame, _ = prepared
    blobs = (
        frame["image_png"].iloc[::5000].tolist() + frame.loc[frame["dataset"] == "cew", "image_png"].head(5).tolist()
    )
    training_input = preprocess.normalize(data.decode_crops(blobs))[:, None]
    np.testing.assert_array_equal(training_input, preprocess_encoded(blobs))
