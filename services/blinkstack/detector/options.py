"""The detector service's flags, each with its literal BLINKSTACK_* environment name."""

from __future__ import annotations

import argparse

from blinkstack.common.backend_options import add_backend_options
from blinkstack.common.config import env_option
from blinkstack.common.grpc_server import add_server_options
from blinkstack.common.model_repository import FACE_DETECTOR_MODEL
from blinkstack.detector import geometry
from blinkstack.detector.engine import DEFAULT_INPUT_WIDTH, DEFAULT_SCORE_THRESHOLD
from blinkstack.services import DETECTOR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser, DETECTOR)
    add_backend_options(parser, DETECTOR, FACE_DETECTOR_MODEL)
    group = parser.add_argument_group("detector")
    env_option(
        group,
        "--input-width",
        "BLINKSTACK_DETECTOR_INPUT_WIDTH",
        DEFAULT_INPUT_WIDTH,
        int,
        help="frames are scaled down to this width for the face model (multiple of 32)",
    )
    env_option(
        group,
        "--score-threshold",
        "BLINKSTACK_DETECTOR_SCORE_THRESHOLD",
        DEFAULT_SCORE_THRESHOLD,
        float,
        help="lowest face score reported",
    )
    env_option(
        group,
        "--min-face-px",
        "BLINKSTACK_DETECTOR_MIN_FACE_PX",
        geometry.DEFAULT_MIN_FACE_PX,
        float,
        help="narrower faces are not reported (their eyes are too small to judge)",
    )
    env_option(
        group,
        "--max-streams",
        "BLINKSTACK_DETECTOR_MAX_STREAMS",
        1024,
        int,
        help="unary DetectEyes streams whose tracks are kept (least recently used dropped)",
    )
    env_option(
        group,
        "--detect-every",
        "BLINKSTACK_DETECTOR_DETECT_EVERY",
        1,
        int,
        help="StreamDetectEyes: run the face model every Nth frame, optical flow on the landmarks in between",
    )
