"""The detector service's flags, each with its literal BLINKSTACK_* environment name, and the options built
from them once (`from_args`): the server code takes `DetectorOptions`, never the parsed flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

from blinkstack.common.backend_options import BackendOptions, add_backend_options, backend_options
from blinkstack.common.config import env_option, from_flags
from blinkstack.common.grpc_server import ServerSettings, add_server_options, settings_from_args
from blinkstack.common.model_repository import FACE_DETECTOR_MODEL, FACE_LANDMARK_MODEL
from blinkstack.detector import adapters, geometry
from blinkstack.detector.front_end import DEFAULT_MAX_FACES
from blinkstack.services import DETECTOR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser, DETECTOR)
    # One thread per model: the two models run on their own threads, and a camera's frame is too small to share
    # one model run across cores (two threads per model cost 20 % more CPU per frame on 2 cores).
    add_backend_options(parser, DETECTOR, FACE_DETECTOR_MODEL, default_threads=1)
    group = parser.add_argument_group("detector")
    env_option(
        group,
        "--front-end",
        "BLINKSTACK_DETECTOR_FRONT_END",
        adapters.DEFAULT_FRONT_END,
        help="landmarks: the face detector finds faces, a landmark model follows each one every frame and gives "
        "its eye corners, lids and aperture | centerface: the face detector alone (eye centres only)",
        choices=list(adapters.FRONT_ENDS),
    )
    env_option(
        group,
        "--landmark-model",
        "BLINKSTACK_DETECTOR_LANDMARK_MODEL",
        FACE_LANDMARK_MODEL,
        help="landmark model name in the repository (landmarks front end)",
    )
    env_option(
        group,
        "--landmark-model-version",
        "BLINKSTACK_DETECTOR_LANDMARK_MODEL_VERSION",
        "",
        help="pinned landmark model version (empty: newest)",
    )
    env_option(
        group,
        "--input-width",
        "BLINKSTACK_DETECTOR_INPUT_WIDTH",
        adapters.DEFAULT_INPUT_WIDTH,
        int,
        help="frames are scaled down to this width for the face detector (multiple of 32)",
    )
    env_option(
        group,
        "--score-threshold",
        "BLINKSTACK_DETECTOR_SCORE_THRESHOLD",
        adapters.DEFAULT_SCORE_THRESHOLD,
        float,
        help="lowest face detector score reported",
    )
    env_option(
        group,
        "--min-presence",
        "BLINKSTACK_DETECTOR_MIN_PRESENCE",
        adapters.DEFAULT_MIN_PRESENCE,
        float,
        help="a followed face whose landmark-model presence falls below this is lost (landmarks front end)",
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
        "--min-eye-px",
        "BLINKSTACK_DETECTOR_MIN_EYE_PX",
        geometry.JUDGEABLE.min_eye_px,
        float,
        help="eye boxes narrower than this are not judged: EyeDetection.unjudgeable = EYE_TOO_SMALL (half the "
        "eye-state model's 32 px input)",
        at_least=0,
    )
    env_option(
        group,
        "--min-face-score",
        "BLINKSTACK_DETECTOR_MIN_FACE_SCORE",
        geometry.JUDGEABLE.min_face_score,
        float,
        help="eyes of faces detected with a lower score are not judged: LOW_CONFIDENCE_DETECTION (the best face of "
        "every sampled ZJU frame scored >= 0.81, of the Eyeblink8 video >= 0.92)",
    )
    env_option(
        group,
        "--max-faces",
        "BLINKSTACK_DETECTOR_MAX_FACES",
        DEFAULT_MAX_FACES,
        int,
        help="faces followed per stream (landmarks front end; each costs one landmark-model run per frame)",
        at_least=1,
    )
    env_option(
        group,
        "--max-streams",
        "BLINKSTACK_DETECTOR_MAX_STREAMS",
        1024,
        int,
        help="unary DetectEyes streams whose tracks are kept (least recently used dropped)",
        at_least=1,
    )
    env_option(
        group,
        "--detect-every",
        "BLINKSTACK_DETECTOR_DETECT_EVERY",
        0,
        int,
        help="run the face detector every Nth frame of a stream; in between the landmark model follows the faces "
        "(landmarks front end; 0: 30) or optical flow moves the face detector's points (centerface; 0: 1, every frame)",
        at_least=0,
    )


@dataclass(frozen=True)
class DetectorOptions:
    server: ServerSettings
    face_detector: BackendOptions
    face_landmarks: BackendOptions  # run by the landmarks front end only
    front_end: str
    adapter: adapters.AdapterSettings
    judgeable: geometry.Judgeable
    min_face_px: float
    max_faces: int
    max_streams: int
    detect_every: int


def from_args(args: argparse.Namespace) -> DetectorOptions:
    """The options, with the TLS, token and model-repository settings checked now (a ValueError says what)."""
    face_detector = backend_options(args)
    return from_flags(
        DetectorOptions,
        args,
        server=settings_from_args(args),
        face_detector=face_detector,
        face_landmarks=replace(face_detector, model_name=args.landmark_model, version=args.landmark_model_version),
        adapter=adapters.AdapterSettings(
            input_width=args.input_width, score_threshold=args.score_threshold, min_presence=args.min_presence
        ),
        judgeable=geometry.Judgeable(min_eye_px=args.min_eye_px, min_face_score=args.min_face_score),
    )
