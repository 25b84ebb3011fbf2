"""Keeping up with the store, by catalog size: the change log against the old full scan.

Filesystem stores of N tasks (tiny random backbone bias sets; files written directly,
then opened by FilesystemStore, which turns them into its change log's first snapshot,
as it does for any store made before the log). For each size:

- ``catalog_s``: reading the catalog (newest snapshot + the log's tail), as a replica's
  start-up does, against ``scan_s``, the per-task scan every change used to cost;
- ``startup_s`` (sizes in ``--startup-sizes``): a whole replica start: the catalog, then
  every task read, validated and registered in the engine (``StoreSync.start``);
- ``apply_one_ms``: another writer stores a new version of one task, then a replica's
  ``poll()`` applies it (list the log after its generation, read the entry, read, validate
  and register the version). The replica starts at the store's generation with an empty
  engine: what varies is the store's catalog, not the engine. Measured interleaved across
  the sizes, median of ``--changes``.

    .venv/bin/python -m bench.store_sync --sizes 100 100000 --startup-sizes 1000 10000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import emit


def build(root: Path, spec, n: int) -> Path:
    """A store folder of ``n`` tasks at version 1, written without the store (fast, no fsync)."""
    from bias_store.format import dumps
    from tests.helpers import random_bias_set

    template = dumps(random_bias_set(spec, "task-xxxxxx", seed=0))
    for i in range(n):
        name = f"task-{i:06d}"
        # Same tensors; the header carries the task's own name (same length: offsets hold).
        data = template.replace(b"task-xxxxxx", name.encode())
        folder = root / "tasks" / name
        folder.mkdir(parents=True)
        (folder / "v000001.safetensors").write_bytes(data)
        (folder / "CURRENT").write_text(f"1 {hashlib.sha256(data).hexdigest()}")
    return root


def replica(root: Path, backbone):
    from bias_store.filesystem import FilesystemStore
    from engine import Engine
    from server.metrics import Metrics
    from server.sync import StoreSync
    from server.validation import UploadValidator

    store = FilesystemStore(root)
    validator = UploadValidator(backbone.spec, 1 << 24, Metrics())
    return StoreSync(store, Engine(backbone, capacity=len(store.catalog()[1])), validator, interval=3600)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 100_000])
    parser.add_argument("--startup-sizes", type=int, nargs="*", default=[1000, 10_000])
    parser.add_argument("--changes", type=int, default=30)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import torch

    from bias_store.filesystem import FilesystemStore
    from engine import load_backbone
    from tests.helpers import save_tiny_backbone

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bitfit-store-sync-"))
    backbone = load_backbone(str(save_tiny_backbone(work / "backbone")), device="cpu")
    replicas = {}
    for n in sorted(set(args.sizes) | set(args.startup_sizes)):
        started = time.perf_counter()
        root = build(work / f"store-{n}", backbone.spec, n)
        FilesystemStore(root)  # starts the change log: the scanned tasks become snapshot 0
        built_s = time.perf_counter() - started

        started = time.perf_counter()
        generation, catalog = FilesystemStore(root).catalog()
        catalog_s = time.perf_counter() - started
        started = time.perf_counter()
        scanned = {name: (root / "tasks" / name / "CURRENT").read_text() for name in os.listdir(root / "tasks")}
        scan_s = time.perf_counter() - started
        assert len(catalog) == len(scanned) == n

        record = {"bench": "store_sync", "tasks": n, "build_s": round(built_s, 1), "catalog_s": round(catalog_s, 4),
                  "scan_s": round(scan_s, 4)}
        if n in args.startup_sizes:
            record["startup_s"] = replica_startup_s(root, backbone, n)
        if n in args.sizes:
            sync = replica(root, backbone)
            sync.generation = generation  # caught up, engine empty: see the docstring
            replicas[n] = sync
        emit(record)
    apply_one(replicas, backbone.spec, args.changes)
    return 0


def replica_startup_s(root: Path, backbone, n: int) -> float:
    """A whole replica start on a store of ``n`` tasks: catalog, then every task read, validated, registered."""
    sync = replica(root, backbone)
    started = time.perf_counter()
    sync.start()
    seconds = round(time.perf_counter() - started, 2)
    sync.stop()
    assert len(sync.engine.tasks()) == n
    return seconds


def apply_one(replicas: dict, spec, changes: int) -> None:
    """Another writer stores one new version; each replica's poll() applies it. Interleaved
    across the sizes, so every size sees the same box conditions."""
    from bias_store.filesystem import FilesystemStore
    from bias_store.format import dumps
    from bias_store.validate import validate_upload
    from tests.helpers import random_bias_set

    writers = {n: FilesystemStore(sync.store.root) for n, sync in replicas.items()}
    times: dict[int, list[float]] = {n: [] for n in replicas}
    for i in range(changes):
        for n, sync in replicas.items():
            data = dumps(random_bias_set(spec, "task-000000", seed=i + 1))
            writers[n].put(validate_upload(data, spec))
            started = time.perf_counter()
            assert sync.poll() == 1
            times[n].append(time.perf_counter() - started)
    medians = {n: statistics.median(t) * 1000 for n, t in times.items()}
    small, large = min(medians), max(medians)
    emit({"bench": "store_sync_apply_one", "apply_one_ms_median": {n: round(m, 2) for n, m in medians.items()},
          "apply_one_ms_max": {n: round(max(t) * 1000, 2) for n, t in times.items()},
          f"ratio_{large}_vs_{small}": round(medians[large] / medians[small], 2), "changes": changes})


if __name__ == "__main__":
    sys.exit(main())
