"""`blinkstack up` and `blinkstack demo`: the whole stack on this machine, and the README's main job."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from blinkstack.local.stack import DEFAULT_DATA_DIR, Stack, StackConfig, StackError
from blinkstack.services import AGGREGATOR, DETECTOR, EYESTATE


def stack_config(args: argparse.Namespace) -> StackConfig:
    return StackConfig(
        host=args.host,
        detector_port=args.detector_port,
        eyestate_port=args.eyestate_port,
        aggregator_port=args.aggregator_port,
        redis_port=args.redis_port,
        metrics=not args.no_metrics,
        data_dir=Path(args.data_dir),
        triton_url=args.triton or "",
        with_triton=args.with_triton,
    )


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("stack")
    group.add_argument("--host", default="127.0.0.1", help="address every component listens on")
    for spec in (DETECTOR, EYESTATE, AGGREGATOR):
        group.add_argument(f"--{spec.name}-port", type=int, default=spec.port, help=f"{spec.name} gRPC port")
    group.add_argument("--redis-port", type=int, default=StackConfig.redis_port)
    group.add_argument("--no-metrics", action="store_true", help="no Prometheus ports (the services' defaults)")
    group.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="Redis AOF and the components' logs")
    triton = group.add_mutually_exclusive_group()
    triton.add_argument("--triton", metavar="URL", help="eye-state service uses this Triton (gRPC host:port)")
    triton.add_argument("--with-triton", action="store_true", help="start a local Triton and use it")


def up(args: argparse.Namespace) -> int:
    stack = Stack(stack_config(args))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, address in stack.endpoints().items():
        print(f"{name:11s} {address}")
    print(f"logs in {Path(args.data_dir) / 'logs'}; stack ready (Ctrl-C stops it)", flush=True)
    try:
        while not stopping.wait(0.5):
            stack.supervise(lambda line: print(line, file=sys.stderr, flush=True))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping", flush=True)
        stack.stop()
    return 0


def demo(args: argparse.Namespace, run_watch: Callable[[argparse.Namespace, str], int]) -> int:
    """up + watch + down: the README's main job."""
    stack = Stack(stack_config(args))
    try:
        stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print("stack ready: " + ", ".join(f"{k} {v}" for k, v in stack.endpoints().items()), flush=True)
        return run_watch(args, stack.config.address(stack.config.aggregator_port))
    finally:
        stack.stop()
