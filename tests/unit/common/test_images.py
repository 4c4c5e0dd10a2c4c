"""Eye boxes checked before any pixel is touched (common/images.py check_box)."""

from __future__ import annotations

import math

import pytest

from blinkstack.common.errors import InvalidInput
from blinkstack.common.images import MAX_CROP_SIDE, check_box
from blinkstack.v1 import types_pb2


def test_a_box_inside_the_frame_gives_its_whole_pixel_corners():
    assert check_box(types_pb2.Box(x=10.4, y=20.6, width=30, height=30), 640, 480, "b") == (10, 21, 40, 51)


def test_a_box_may_stick_out_of_the_frame_if_its_centre_is_inside():
    assert check_box(types_pb2.Box(x=-10, y=-10, width=40, height=40), 640, 480, "b") == (-10, -10, 30, 30)


@pytest.mark.parametrize(
    ("box", "says"),
    [
        (types_pb2.Box(x=math.nan, y=0, width=10, height=10), "non-finite"),
        (types_pb2.Box(x=0, y=0, width=10, height=10, angle_deg=270), "outside -180..180"),
        (types_pb2.Box(x=0, y=0, width=0, height=10), "must be > 0"),
        (types_pb2.Box(x=-500, y=-500, width=100, height=100), "centre outside the 640x480 frame"),
        (types_pb2.Box(x=1, y=1, width=0.2, height=0.2), "smaller than one pixel"),
        (types_pb2.Box(x=0, y=0, width=700, height=100), "larger than the 640x480 frame"),
    ],
)
def test_every_bad_box_is_refused_naming_what_is_wrong(box, says):
    with pytest.raises(InvalidInput, match=says) as refused:
        check_box(box, 640, 480, "frame.eye_boxes[3]")
    assert str(refused.value).startswith("frame.eye_boxes[3]: ")


def test_no_crop_is_larger_than_the_crop_limit_even_in_a_larger_frame():
    side = MAX_CROP_SIDE + 1
    with pytest.raises(InvalidInput, match=f"{MAX_CROP_SIDE}-pixel limit"):
        check_box(types_pb2.Box(x=0, y=0, width=side, height=side), 4096, 4096, "b")
