"""The store flags ``bitfit train`` and ``bitfit worker`` share: how an ``s3://`` store is
reached (endpoint, timeouts) and its local disk tier, each defaulting to the ``BITFIT_*``
variable that ``bitfit serve`` reads, so one environment configures all three."""

from __future__ import annotations

import argparse
import os

from bias_store.open_store import S3_ENDPOINT_ENV

# flag destination -> (variable, type, default, help)
STORE_FLAGS = {
    "s3_connect_timeout_s": ("BITFIT_S3_CONNECT_TIMEOUT_S", float, 2.0, "seconds to connect to the S3 endpoint, per attempt"),
    "s3_read_timeout_s": ("BITFIT_S3_READ_TIMEOUT_S", float, 10.0, "seconds an S3 call may wait for its answer, per attempt"),
    "s3_max_attempts": ("BITFIT_S3_MAX_ATTEMPTS", int, 2, "attempts per S3 call, the first included"),
    "cache_dir": ("BITFIT_CACHE_DIR", str, None, "an s3:// store's local disk tier of version files"),
    "cache_bytes": ("BITFIT_CACHE_BYTES", int, 1 << 30, "the most bytes --cache-dir holds"),
}


def add_store_arguments(group: argparse._ActionsContainer) -> None:
    group.add_argument("--s3-endpoint-url", default=os.environ.get(S3_ENDPOINT_ENV),
                       help=f"S3 endpoint for an s3:// --store off AWS (default: ${S3_ENDPOINT_ENV})")
    for dest, (env, kind, default, text) in STORE_FLAGS.items():
        raw = os.environ.get(env)
        group.add_argument("--" + dest.replace("_", "-"), dest=dest, type=kind, metavar=kind.__name__.upper(),
                           default=kind(raw) if raw else default, help=f"{text} (default: ${env} or {default})")


def store_options(args: argparse.Namespace) -> dict:
    """``open_store``'s keyword arguments from the parsed flags."""
    return {dest: getattr(args, dest) for dest in STORE_FLAGS}
