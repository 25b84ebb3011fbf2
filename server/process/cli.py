"""The ``bitfit`` console command: ``bitfit serve | train | worker | jobs | keys | store``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them together.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import NoReturn

from server.process import logs
from server.process.logs import FORMATS

log = logging.getLogger("bitfit")

SUBCOMMANDS = {
    "serve": ("server.process.serve_cli", "run the inference server"),
    "train": ("training.cli", "train a task's bias set with BitFit"),
    "worker": ("training.worker_cli", "train and publish tasks dropped into an inbox folder"),
    "jobs": ("training.jobs.cli", "the training job queue: `bitfit jobs worker` trains queued jobs"),
    "keys": ("server.process.keys_cli", "add, list and revoke the scoped API keys of BITFIT_KEYS_FILE"),
    "store": ("server.process.store_cli", "migrate a folder store's task folders into shards"),
}


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# BITFIT_* names read outside Settings: by client tools (the one client key) and by
# docker-compose.yml on the host side.
OTHER_VARIABLES = {"BITFIT_API_KEY", "BITFIT_HTTP_PORT", "BITFIT_GPU_HTTP_PORT", "BITFIT_BIND"}
BENCH_PREFIX = "BITFIT_BENCH_"  # the bench/ scripts' own knobs


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, unless it already says it or has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def known_variables() -> set[str]:
    from server.process.settings import Settings

    return {f"BITFIT_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES


def unknown_variables(environ: dict[str, str]) -> list[str]:
    """A warning per BITFIT_* variable nothing reads (a typo is otherwise silently ignored)."""
    known = known_variables()
    warnings = []
    for name in sorted(n for n in environ if n.startswith("BITFIT_") and n not in known and not n.startswith(BENCH_PREFIX)):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; docs/OPERATIONS.md lists them"
        warnings.append(f"{name} is not a bitfit setting and is ignored{hint}")
    return warnings


def _version() -> str:
    try:
        return metadata.version("bitfit-serve")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _logging_options(parser: argparse.ArgumentParser, default_format: str, top: bool) -> None:
    # On the subcommand too (`bitfit serve --log-level DEBUG`); there the default is
    # SUPPRESS so that a value given before the subcommand is not overwritten.
    parser.add_argument("--log-level", type=str.upper, choices=LEVELS, default="INFO" if top else argparse.SUPPRESS,
                        help="logging level")
    parser.add_argument("--log-format", choices=FORMATS, default=default_format if top else argparse.SUPPRESS,
                        help="text, or one JSON object per line (BITFIT_LOG_FORMAT)")


class Parser(argparse.ArgumentParser):
    """Names the closest flag when one is misspelt (``--prot`` -> ``--port``), as the variable check does."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            known = _option_strings(self)
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6) if word.startswith("--") else []
                if close:
                    message += f"; did you mean {close[0]}?"
                    break
        super().error(message)


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    names = list(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names += _option_strings(sub)
    return sorted(set(names))


def build_parser(fill: Iterable[str], default_format: str = "text") -> tuple[argparse.ArgumentParser, dict]:
    """The ``bitfit`` parser, with the arguments of the subcommands in ``fill`` (the others list
    only their name and help). Filling a subcommand imports its module, so `bitfit --help` and
    `--version` import none: they answer in a fraction of a second, without torch."""
    parser = Parser(prog="bitfit", description="BitFit multi-task inference server", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"bitfit {_version()}")
    _logging_options(parser, default_format, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = None
        if name in fill:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise  # a real import error inside the module: do not hide it
                continue  # that subcommand is not part of this install (yet)
        subparser = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if module is not None:
            modules[name] = module
            module.add_arguments(subparser)
        _logging_options(subparser, default_format, top=False)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    # The one place the CLI reads a logging variable: logging starts before any settings object.
    default_format = os.environ.get("BITFIT_LOG_FORMAT", "text")
    if default_format not in FORMATS:
        print(f"bitfit: BITFIT_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {default_format!r}", file=sys.stderr)
        return 2
    words = sys.argv[1:] if argv is None else argv
    chosen = next((word for word in words if word in SUBCOMMANDS), None)
    parser, modules = build_parser([chosen] if chosen else [], default_format)
    args = parser.parse_args(argv)
    if args.command not in modules:
        print(f"bitfit: `bitfit {args.command}` is not part of this install", file=sys.stderr)
        return 2
    logs.configure(args.log_level, args.log_format)
    for warning in unknown_variables(dict(os.environ)):
        log.warning(warning)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
