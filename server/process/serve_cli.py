"""``bitfit serve``: run the inference server under uvicorn.

Every flag has a ``BITFIT_*`` environment variable (flags win). Top-level imports stay
light: the ``bitfit`` command imports every subcommand module at start.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args, get_origin

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from server.process.settings import Settings

log = logging.getLogger(__name__)


# Variables only: a flag's value shows in `ps` and in shell history.
VARIABLE_ONLY = ("api_keys", "predict_api_keys")
# Flags of the `bitfit` command itself (server/process/cli.py), on every subcommand.
COMMAND_FLAGS = ("log_format",)
GIL_SWITCH_INTERVAL_S = 0.0005  # sys.setswitchinterval of the serving process (_tune_process, below)
# gc thresholds of the serving process: the youngest generation collected every 10,000 net
# allocations rather than 700 halves the cyclic GC's CPU per request (0.060 -> 0.033 ms).
GC_THRESHOLDS = (10_000, 20, 20)


def flagged() -> list[str]:
    """The Settings fields that are `bitfit serve` flags: all but the two kinds above."""
    from server.process.settings import Settings

    return [name for name in Settings.model_fields if name not in VARIABLE_ONLY + COMMAND_FLAGS]


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _argument(info: FieldInfo) -> dict:
    """argparse keywords for one Settings field: its choices, type and number of values."""
    annotation = info.annotation
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if get_origin(annotation) is Literal:
        return {"choices": list(get_args(annotation))}
    if get_origin(annotation) is list:
        return {"nargs": "+", "metavar": "VALUE"}
    if annotation in (int, float):
        return {"type": annotation}
    return {}  # str, paths, "int or a word": pydantic converts the text


def _shown(default: object) -> str:
    if isinstance(default, list):
        return ",".join(map(str, default)) or "none"
    return "unset" if default is None else str(default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field (server/process/settings.py), its help and default from the field."""
    from pydantic_core import PydanticUndefined

    from server.process.settings import Settings, env_name

    variables = ", ".join(env_name(name) for name in VARIABLE_ONLY)
    parser.epilog = (f"Every flag is also a BITFIT_* variable (flags win, then variables, then --config). {variables} are "
                     "variables only. docs/OPERATIONS.md lists them all.")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="a YAML file of settings (name: value, as the flags without the dashes); flags and variables win")
    for name in flagged():
        info = Settings.model_fields[name]
        default = info.default if info.default is not PydanticUndefined else None
        # The parsed default is None, so that an unset flag falls back to the variable, then to Settings.
        parser.add_argument(flag(name), dest=name, default=None, **_argument(info),
                            help=f"{info.description} ({env_name(name)}, default: {_shown(default)})")


def read_config(path: Path | None, environ: dict[str, str]) -> dict:
    """The --config file's settings, less those a variable sets (variables win over the file)."""
    import yaml

    from server.process.settings import Settings, env_name

    if path is None:
        return {}
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of setting: value")
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in Settings.model_fields:
            close = difflib.get_close_matches(name, list(Settings.model_fields), n=1)
            raise ValueError(f"{path}: {key!r} is not a setting" + (f"; did you mean {close[0]!r}?" if close else ""))
        if env_name(name) not in environ:
            out[name] = value
    return out


def port_problem(host: str, port: int) -> str | None:
    """Whether the address is taken: checked before the backbone loads (tens of seconds)."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            return f"{host}:{port} is not free ({exc.strerror}); pick another --port"
    return None


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Flags win, then variables, then the --config file, then the defaults."""
    from server.process.settings import Settings

    flags = {name: getattr(args, name) for name in flagged() if getattr(args, name, None) is not None}
    return Settings(**{**read_config(getattr(args, "config", None), environ), **flags})


def light_problem(settings: Settings) -> str | None:
    """What refuses the settings before torch is imported: a missing preload, a taken port."""
    missing = [str(p) for p in settings.preload if not Path(p).is_file()]
    if missing:
        return f"--preload file not found: {', '.join(missing)}"
    problem = port_problem(settings.host, settings.port)
    return f"--port / BITFIT_PORT: {problem}" if problem else None


def run(args: argparse.Namespace) -> int:
    import os

    from pydantic import ValidationError

    from server.process.settings import describe_error

    try:
        settings = settings_from(args, dict(os.environ))
    except ValidationError as exc:
        print(f"bitfit serve: invalid settings:\n{describe_error(exc, tuple(flagged()))}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"bitfit serve: --config: {exc}", file=sys.stderr)
        return 2
    problem = light_problem(settings)
    if problem:
        print(f"bitfit serve: {problem}", file=sys.stderr)
        return 2

    import torch  # heavy imports (torch, transformers) only once the settings are sound
    import uvicorn

    from engine.backbone import backbone_problem, resolve_device
    from server.http.app import create_app

    # Refused before anything loads, in one line naming the flag.
    problem = backbone_problem(settings.backbone)
    if problem:
        print(f"bitfit serve: --backbone / BITFIT_BACKBONE: {problem}", file=sys.stderr)
        return 2
    try:
        device = resolve_device(settings.device)
    except RuntimeError as exc:
        print(f"bitfit serve: --device / BITFIT_DEVICE: {exc}", file=sys.stderr)
        return 2
    if device.type == "cpu" and settings.dtype != "float32":
        print(f"bitfit serve: --dtype / BITFIT_DTYPE: {settings.dtype} needs a GPU; on the CPU use float32", file=sys.stderr)
        return 2

    if settings.compile != "off" and settings.backend == "onnxruntime":
        print("bitfit serve: --compile / BITFIT_COMPILE: compiles the PyTorch forward; with --backend onnxruntime leave it off",
              file=sys.stderr)
        return 2

    if settings.otlp_endpoint:
        from server.process.tracing import export_traces

        export_traces(settings.otlp_endpoint)
    _tune_process(settings, torch)

    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    # uvicorn handles SIGINT/SIGTERM: stop accepting, finish in-flight requests, then the
    # lifespan drains the batch queue and stops the store watcher.
    server.run()
    if not server.started:
        log.error("the server did not start; see the errors above")
        return 1
    return 0


def _tune_process(settings: Settings, torch) -> None:
    from server.process.settings import available_cores

    torch.set_num_threads(settings.resolved_torch_threads(available_cores()))
    log.info("torch uses %d threads of %s cores", torch.get_num_threads(), available_cores())
    # The inference worker returns from each forward (which it runs without the GIL) wanting
    # the GIL back; a busy event loop keeps it for up to the switch interval, 5 ms by
    # default: a stall per batch. 0.5 ms bounds it (docs/benchmarks/request_path.md).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)


def uvicorn_config(app, settings):  # -> uvicorn.Config (uvicorn is imported lazily)
    """The uvicorn settings of `bitfit serve` (tests run a real server with the same ones)."""
    import uvicorn

    from server.process.protocol import protocol_class

    return uvicorn.Config(
        app,
        http=protocol_class(settings.header_timeout_s),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the logging that `bitfit` configured
        access_log=False,  # the app's own (server/http/access_log.py), with its fields as fields
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )
