"""The `animegan` command: one argparse sub-command per module, each exposing `register(subparsers)`.

Library commands always load; the service commands (api.cli, workers.cli) only where those packages import.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from animegan import __version__
from animegan.errors import AnimeGANError, ConfigError

logger = logging.getLogger(__name__)

LIBRARY_COMMANDS = (
    "animegan.cli.stylize",
    "animegan.cli.stylize_video",
    "animegan.cli.info",
    "animegan.cli.import_weights",
    "animegan.cli.export",
    "animegan.cli.train",
    "animegan.cli.smooth_edges",
)
# Optional: absent when the service extras (celery, redis, fastapi) are not installed.
SERVICE_COMMANDS = ("api.cli", "workers.cli")
# Top-level modules of the [ml] extra (pyproject.toml); absent on an API host.
ML_EXTRA_MODULES = ("torch", "cv2", "safetensors")


def _register_all(subparsers: argparse._SubParsersAction) -> None:
    # Command modules import only argparse-level code; torch loads inside run(), so an API host (no [ml] extra)
    # still builds this parser for `animegan serve`.
    for name in LIBRARY_COMMANDS:
        importlib.import_module(name).register(subparsers)
    for name in SERVICE_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            logger.debug("service commands from %s unavailable: %s", name, exc)
            continue
        module.register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="animegan",
        description="AnimeGAN v1/v2: stylize photos, inspect and import weights, train styles, run the service.",
    )
    parser.add_argument("--version", action="version", version=f"animegan {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress logs (INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_all(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 failed, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help/--version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("animegan: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ML_EXTRA_MODULES:
            raise
        print(
            f"animegan: error: `animegan {args.command}` needs the model library's [ml] extra ({exc.name} is "
            "not installed): pip install -c constraints.txt '.[ml]'",
            file=sys.stderr,
        )
        return 1
    except (AnimeGANError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"animegan: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
