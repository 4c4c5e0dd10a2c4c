"""The eye-state service's flags, each with its literal BLINKSTACK_* environment name, and the options built
from them once (`from_args`): the server code takes `EyeStateOptions`, never the parsed flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from blinkstack.common.backend_options import BackendOptions, add_backend_options, backend_options
from blinkstack.common.config import env_option, from_flags, parse_bool
from blinkstack.common.grpc_server import ServerSettings, add_server_options, settings_from_args
from blinkstack.common.model_repository import EYE_STATE_MODEL
from blinkstack.services import EYESTATE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser, EYESTATE)
    add_backend_options(parser, EYESTATE, EYE_STATE_MODEL)
    group = parser.add_argument_group("eye-state")
    env_option(
        group,
        "--threshold",
        "BLINKSTACK_EYESTATE_THRESHOLD",
        0.5,
        float,
        help="prob_open at or above which an eye is OPEN",
    )
    env_option(
        group,
        "--gate",
        "BLINKSTACK_EYESTATE_GATE",
        True,
        parse_bool,
        help="score every crop with the eye gate model (eye_gate in the repository or on Triton) and report crops "
        "that are not eyes as UNKNOWN (NOT_AN_EYE)",
    )
    env_option(
        group,
        "--uncertain-band",
        "BLINKSTACK_EYESTATE_UNCERTAIN_BAND",
        0.0,
        float,
        help="prob_open within this distance of --threshold is UNKNOWN (MODEL_UNCERTAIN); 0: off, because a person "
        "whose open eyes read near the threshold would lose every reading (the aggregator judges eyes against each "
        "eye's own open level instead)",
        at_least=0,
        below=0.5,
    )
    env_option(
        group, "--max-crops", "BLINKSTACK_EYESTATE_MAX_CROPS", 256, int, help="most crops per request", at_least=1
    )
    env_option(
        group,
        "--max-batch",
        "BLINKSTACK_EYESTATE_MAX_BATCH",
        256,
        int,
        help="largest micro-batch (onnxruntime)",
        at_least=1,
    )
    env_option(
        group,
        "--max-delay-ms",
        "BLINKSTACK_EYESTATE_MAX_DELAY_MS",
        0.0,
        float,
        help="wait this long to fill a micro-batch (onnxruntime)",
        at_least=0,
    )
    env_option(
        group,
        "--run-batch",
        "BLINKSTACK_EYESTATE_RUN_BATCH",
        32,
        int,
        help="crops per ONNX Runtime run; micro-batches run in chunks of this size (32 suits CPU caches; "
        "raise it to --max-batch on GPU providers)",
        at_least=1,
    )
    env_option(
        group,
        "--inline-max-crops",
        "BLINKSTACK_EYESTATE_INLINE_MAX_CROPS",
        4,
        int,
        help="a request of at most this many crops on an otherwise idle server runs at once on the event loop, "
        "single-threaded (onnxruntime on CPU; 0: always batch on the worker thread)",
        at_least=0,
    )


@dataclass(frozen=True)
class EyeStateOptions:
    server: ServerSettings
    backend: BackendOptions
    threshold: float
    gate: bool
    uncertain_band: float
    max_crops: int
    max_batch: int
    max_delay_ms: float
    run_batch: int
    inline_max_crops: int


def from_args(args: argparse.Namespace) -> EyeStateOptions:
    """The options, with the TLS, token and model-repository settings checked now (a ValueError says what)."""
    return from_flags(EyeStateOptions, args, server=settings_from_args(args), backend=backend_options(args))
