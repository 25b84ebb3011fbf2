"""``bitfit serve``: run the inference server under uvicorn.

Every flag has a ``BITFIT_*`` environment variable (flags win). Top-level imports stay
light: the ``bitfit`` command imports every subcommand module at start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Every other setting (limits, batching, auth keys) is a BITFIT_* variable: see docs/OPERATIONS.md."
    # Defaults are None so that unset flags fall back to BITFIT_* variables, then to Settings.
    parser.add_argument("--host", help="interface to bind (BITFIT_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (BITFIT_PORT, default 8000)")
    parser.add_argument(
        "--store", help="bias store: a folder (created if missing), file://... or s3://bucket/prefix (BITFIT_STORE, default ./store)"
    )
    parser.add_argument("--backbone", help="backbone path or id (BITFIT_BACKBONE, default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (BITFIT_DEVICE, default auto)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="backbone dtype (BITFIT_DTYPE, default float32)")
    parser.add_argument(
        "--compile", choices=["off", "default", "max-autotune"],
        help="torch.compile the forward, warmed up at start-up (BITFIT_COMPILE, default off)",
    )
    parser.add_argument(
        "--backend", choices=["torch", "onnxruntime", "auto"],
        help="who runs the encoder (BITFIT_BACKEND, default auto: ONNX Runtime on the CPU when installed)",
    )
    parser.add_argument("--quantize", choices=["none", "int8"], help="int8: ONNX Runtime dynamic quantization (BITFIT_QUANTIZE)")
    parser.add_argument(
        "--load", choices=["auto", "eager", "lazy"],
        help="read and register every stored task at start-up (eager) or on first use (lazy); auto: lazy above "
        "BITFIT_LAZY_ABOVE_TASKS (1000) tasks (BITFIT_LOAD, default auto)",
    )
    parser.add_argument(
        "--preload", nargs="+", type=Path, metavar="FILE",
        help="bias-set files to put into the store at start-up (BITFIT_PRELOAD, comma-separated)",
    )
    parser.add_argument(
        "--preload-policy", choices=["if_absent", "replace"],
        help="if_absent: store a preload only when the store lacks its task (default); replace: also when its bytes "
        "differ from the current version (BITFIT_PRELOAD_POLICY)",
    )


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from server.process.settings import Settings, available_cores, describe_error

    names = ("host", "port", "store", "backbone", "device", "dtype", "backend", "quantize", "load", "preload", "preload_policy")
    flags = {k: getattr(args, k, None) for k in names}
    try:
        settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        print(f"bitfit serve: invalid settings:\n{describe_error(exc, names)}", file=sys.stderr)
        return 2
    missing = [str(p) for p in settings.preload if not Path(p).is_file()]
    if missing:
        print(f"bitfit serve: --preload file not found: {', '.join(missing)}", file=sys.stderr)
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

    torch.set_num_threads(settings.resolved_torch_threads(available_cores()))
    log.info("torch uses %d threads of %s cores", torch.get_num_threads(), available_cores())

    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    # uvicorn handles SIGINT/SIGTERM: stop accepting, finish in-flight requests, then the
    # lifespan drains the batch queue and stops the store watcher.
    server.run()
    if not server.started:
        log.error("the server did not start; see the errors above")
        return 1
    return 0


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
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )
