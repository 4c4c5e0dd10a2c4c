"""`blinkstack serve <service>`: the service entrypoint of the image. It imports serving code only.

The service image installs `.[cpu]` and nothing else; a client tool's dependency (tqdm, matplotlib) imported
here would crash every pod on start, so the tools live in `blinkstack.tools` and `blinkstack.local`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import cv2

from blinkstack.services import SERVICES, ServiceSpec


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    """The `serve` command with one sub-command per service, each with the service's own flags."""
    serve = subparsers.add_parser("serve", help="run one service in the foreground")
    services = serve.add_subparsers(dest="service", required=True)
    for spec in SERVICES.values():
        parser = services.add_parser(spec.name, help=spec.summary)
        spec.options().add_arguments(parser)
        parser.set_defaults(run=lambda args, spec=spec: run(spec, args))


def run(spec: ServiceSpec, args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; a setting refused at start-up is one error line and exit code 2."""
    # A malformed image is the client's INVALID_ARGUMENT; OpenCV's own complaint about it would add a log line
    # per bad request.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        options = spec.options().from_args(args)  # the flags, checked and built into the options once
        asyncio.run(spec.server().serve(options))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str]) -> int:
    """`argv` starts with "serve"."""
    parser = argparse.ArgumentParser(prog="blinkstack", description="Run one blinkstack service.")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args)
