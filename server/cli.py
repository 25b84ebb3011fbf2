"""The ``bitfit`` console command: ``bitfit serve | train | worker``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from server import logs
from server.logs import FORMATS

SUBCOMMANDS = {
    "serve": ("server.serve_cli", "run the inference server"),
    "train": ("training.cli", "train a task's bias set with BitFit"),
    "worker": ("training.worker_cli", "train and publish tasks dropped into an inbox folder"),
}


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _logging_options(parser: argparse.ArgumentParser, default_format: str, top: bool) -> None:
    # On the subcommand too (`bitfit serve --log-level DEBUG`); there the default is
    # SUPPRESS so that a value given before the subcommand is not overwritten.
    parser.add_argument("--log-level", type=str.upper, choices=LEVELS, default="INFO" if top else argparse.SUPPRESS,
                        help="logging level (default: INFO)")
    parser.add_argument("--log-format", choices=FORMATS, default=default_format if top else argparse.SUPPRESS,
                        help=f"text, or one JSON object per line (BITFIT_LOG_FORMAT; default: {default_format})")


def main(argv: list[str] | None = None) -> int:
    # The one place the CLI reads a logging variable: logging starts before any settings object.
    default_format = os.environ.get("BITFIT_LOG_FORMAT", "text")
    if default_format not in FORMATS:
        print(f"bitfit: BITFIT_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {default_format!r}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="bitfit", description="BitFit multi-task inference server")
    _logging_options(parser, default_format, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # a real import error inside the module: do not hide it
            continue  # that subcommand is not part of this install (yet)
        modules[name] = module
        subparser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(subparser)
        _logging_options(subparser, default_format, top=False)
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
