"""``bitfit store migrate``: a folder store made before sharded task folders, moved into them.

A store made now keeps each task's folder at ``tasks/<shard>/<name>`` (``<shard>``: the first
two hex digits of the sha256 of the name; docs/FORMAT.md). An older store keeps working as
it is; this moves its folders (renames, no copies) under the store's lock. Stop the servers
of the store first. A migration that was interrupted is carried on by running it again.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    migrate = sub.add_parser("migrate", help="move a folder store's task folders into 256 shards (stop its servers first)")
    migrate.add_argument("--store", type=Path, default=os.environ.get("BITFIT_STORE"),
                         help="the store's folder (default: BITFIT_STORE)")


def run(args: argparse.Namespace) -> int:
    from bias_store.backends.folder.migrate import migrate

    store = args.store
    if store is not None and str(store).startswith("file://"):
        store = Path(str(store)[len("file://"):])
    if store is None or "://" in str(store):
        print("bitfit store migrate: --store must name a folder store (an S3 store has no folders)", file=sys.stderr)
        return 2
    if not (Path(store) / "tasks").is_dir() and not (Path(store) / "tasks.sharding").is_dir():
        print(f"bitfit store migrate: {store} is not a folder store (no tasks folder)", file=sys.stderr)
        return 2
    moved = migrate(store)
    print(f"{store}: {moved} task folders moved into shards" if moved else f"{store}: task folders are sharded")
    return 0
