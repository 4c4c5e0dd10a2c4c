"""The glasses-rim and motion-blur augmentations (off by default; `train --rim-p/--motion-blur-p`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from blinkstack_train.augment import AugmentConfig, augment

ONLY = dataclasses.replace(  # everything else off, so the effect seen is the one under test
    AugmentConfig(),
    flip_p=0.0,
    max_rotation_deg=0.0,
    scale=(1.0, 1.0),
    max_shift=0.0,
    gamma=(1.0, 1.0),
    contrast=(1.0, 1.0),
    brightness=0.0,
    blur_p=0.0,
    noise_p=0.0,
    occlusion_p=0.0,
    jpeg_p=0.0,
)


def test_defaults_leave_the_served_recipe_unchanged():
    assert AugmentConfig().rim_p == 0.0 and AugmentConfig().motion_blur_p == 0.0


def test_a_rim_is_a_thin_flat_band_away_from_the_eye_centre():
    crops = np.full((64, 32, 32), 128, np.uint8)
    out = augment(crops, np.random.default_rng(0), dataclasses.replace(ONLY, rim_p=1.0))
    changed = np.abs(out - 128) > 20  # rims are dark (0-51) or bright (153-242)
    share = changed.mean(axis=(1, 2))
    assert (share > 0.02).all() and (share < 0.3).all()  # every crop got a band, none is covered
    assert not changed[:, 15:17, 15:17].any()  # the eye's centre is never under it


def test_motion_blur_smears_a_point_along_one_line():
    crops = np.zeros((32, 32, 32), np.uint8)
    crops[:, 16, 16] = 255
    out = augment(crops, np.random.default_rng(0), dataclasses.replace(ONLY, motion_blur_p=1.0))
    for image in out:
        ys, xs = np.nonzero(image > 1)
        assert 3 <= len(ys) <= 9 and image.max() < 255  # spread over 3-7 taps (the line's pixels)
        points = np.stack([xs, ys], 1).astype(float)
        spread = np.linalg.svd(points - points.mean(0), compute_uv=False)
        assert spread[1] < 0.35 * spread[0]  # one direction: a line, not a disc
