"""Keeping up with the store, and starting a replica, by catalog size.

Filesystem stores of N tasks at version 1 (files written directly, with the change log's
snapshot, as a store the server made would hold them). For each size:

- ``catalog_s``: reading the catalog (newest snapshot + the log's tail), as a replica's
  start-up does, against ``scan_s``, the per-task scan every change used to cost;
- ``startup`` (sizes in ``--startup-sizes``): a whole replica start, ``start_services``
  with the real packaged MiniLM (the backbone load, the store, the catalog, the engine,
  the sync; PyTorch backend), until it would answer /readyz, for ``--load`` modes
  (eager: every task read, validated and registered; lazy: on first use). Stores hold
  MiniLM bias sets (113 KB each: 11 GB at 100,000 tasks), measured interleaved, median of
  ``--rounds``; eager runs only for sizes up to ``--eager-max``. For lazy starts it also
  times ``first_use_ms``: loading a few unloaded tasks as their first request does; and
  ``process_to_ready_s``: ``bitfit serve`` as a new process until /readyz answers 200
  (interpreter and imports included: what an operator waits for);
- ``apply_one_ms`` (``--sizes``, tiny backbone): another writer stores a new version of one
  task, then a replica's ``poll()`` applies it (list the log after its generation, read the
  entry, read, validate and register the version). The replica starts at the store's
  generation with an empty engine: what varies is the store's catalog, not the engine.
  Measured interleaved across the sizes, median of ``--changes``.

    .venv/bin/python -m bench.store_sync --sizes 100 100000 --startup-sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import emit


def build(root: Path, spec, n: int) -> Path:
    """A store folder of ``n`` tasks at version 1 with its change log's snapshot, written
    without the store (no fsync, no per-task open check): ~minutes at 100,000 MiniLM tasks."""
    from bias_store.changelog import Change, dump_snapshot
    from bias_store.format import dumps
    from tests.helpers import random_bias_set

    template = dumps(random_bias_set(spec, "task-xxxxxx", seed=0))
    catalog = {}
    for i in range(n):
        name = f"task-{i:06d}"
        # Same tensors; the header carries the task's own name (same length: offsets hold).
        data = template.replace(b"task-xxxxxx", name.encode())
        sha = hashlib.sha256(data).hexdigest()
        folder = root / "tasks" / name
        folder.mkdir(parents=True)
        (folder / "v000001.safetensors").write_bytes(data)
        (folder / "CURRENT").write_text(f"1 {sha}")
        catalog[name] = Change(0, name, 1, sha)
    for sub in ("snapshots", "log", "pending"):
        (root / sub).mkdir()
    (root / "snapshots" / "000000000000.json").write_bytes(dump_snapshot(0, catalog))
    return root


def replica(root: Path, backbone):
    from bias_store.backends.folder import FilesystemStore
    from engine import Engine
    from server.catalog.sync import StoreSync
    from server.catalog.validation import UploadValidator
    from server.process.metrics import Metrics

    store = FilesystemStore(root)
    validator = UploadValidator(backbone.spec, 1 << 24, Metrics())
    return StoreSync(store, Engine(backbone, capacity=len(store.catalog()[1])), validator, interval=3600)


def start_replica(root: Path, load: str, backbone_path: str | None, first_uses: int) -> dict:
    """One whole replica start (``start_services``) on ``root``; seconds until ready."""
    from server.catalog.views import view
    from server.process.metrics import Metrics
    from server.process.services import start_services, stop_services
    from server.process.settings import Settings

    settings = Settings(store=str(root), backbone=backbone_path, backend="torch", load=load, sync_interval_s=3600)
    started = time.perf_counter()
    services = start_services(settings, Metrics(settings.metrics_max_tasks))
    out = {"startup_s": time.perf_counter() - started, "loaded": services.catalog.resident}
    catalog = services.catalog
    try:
        if not services.sync.eager and first_uses:
            names = list(catalog.names.page(len(catalog.stored)))
            times = []
            for name in names[:: max(1, len(names) // first_uses)][:first_uses]:  # spread over the catalog
                if view(catalog, name).loaded:
                    continue  # warmed up meanwhile
                started = time.perf_counter()
                catalog.release(catalog.acquire_blocking(name))
                times.append(time.perf_counter() - started)
            out["first_use_ms"] = statistics.median(times) * 1000 if times else None
    finally:
        stop_services(services)
    return out


def start_process(root: Path, load: str, backbone_path: str | None) -> float:
    """``bitfit serve`` as a new process, until /readyz answers 200 (imports included); seconds."""
    import subprocess

    import httpx

    from tests.helpers import free_port

    port = free_port()
    command = [sys.executable, "-m", "server.process.cli", "--log-level", "WARNING", "serve", "--store", str(root), "--port", str(port),
               "--backend", "torch", "--load", load, *(["--backbone", backbone_path] if backbone_path else [])]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "BITFIT_SYNC_INTERVAL_S": "3600"}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"bitfit serve exited with {proc.returncode}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def startup(work: Path, sizes: list[int], rounds: int, eager_max: int, backbone_name: str) -> None:
    """Replica start-up by catalog size and load mode, interleaved over ``rounds``."""
    from engine import load_backbone

    backbone_path = None if backbone_name == "minilm" else backbone_name
    spec = load_backbone(backbone_path, device="cpu").spec
    runs = [(n, mode) for n in sizes for mode in ("eager", "lazy") if mode == "lazy" or n <= eager_max]
    for n in sizes:
        started = time.perf_counter()
        build(work / f"startup-{n}", spec, n)
        emit({"bench": "store_sync_build", "tasks": n, "build_s": round(time.perf_counter() - started, 1)})
    results: dict[tuple[int, str], list[dict]] = {run: [] for run in runs}
    for _ in range(rounds):
        for n, mode in runs:
            out = start_replica(work / f"startup-{n}", mode, backbone_path, first_uses=20)
            if mode == "lazy" or n <= 1000:  # a whole process start too (an eager 10,000 adds nothing new)
                out["process_s"] = start_process(work / f"startup-{n}", mode, backbone_path)
            results[(n, mode)].append(out)
    for (n, mode), outs in results.items():
        record = {"bench": "store_sync_startup", "tasks": n, "load": mode, "backbone": backbone_name, "rounds": rounds,
                  "startup_s_median": round(statistics.median(o["startup_s"] for o in outs), 2),
                  "startup_s_all": [round(o["startup_s"], 2) for o in outs], "loaded_at_ready": outs[0]["loaded"]}
        if "process_s" in outs[0]:
            record["process_to_ready_s_median"] = round(statistics.median(o["process_s"] for o in outs), 2)
            record["process_to_ready_s_all"] = [round(o["process_s"], 2) for o in outs]
        firsts = [o["first_use_ms"] for o in outs if o.get("first_use_ms") is not None]
        if firsts:
            record["first_use_ms_median"] = round(statistics.median(firsts), 1)
        emit(record)
    small, large = min(sizes), max(sizes)
    ratios = {}
    for key in ("startup_s", "process_s"):
        lazy = {n: statistics.median(o[key] for o in results[(n, "lazy")]) for n in (small, large)}
        ratios[f"{key}_lazy_{large}_vs_lazy_{small}"] = round(lazy[large] / lazy[small], 2)
        if (small, "eager") in results:
            eager = statistics.median(o[key] for o in results[(small, "eager")])
            ratios[f"{key}_lazy_{large}_vs_eager_{small}"] = round(lazy[large] / eager, 2)
    emit({"bench": "store_sync_startup_ratio", **ratios})
    for n in sizes:
        shutil.rmtree(work / f"startup-{n}", ignore_errors=True)


def apply_one(work: Path, sizes: list[int], changes: int) -> None:
    """One change applied by a replica, by catalog size (tiny backbone), interleaved."""
    import torch

    from bias_store.backends.folder import FilesystemStore
    from bias_store.format import dumps
    from bias_store.validate import validate_upload
    from engine import load_backbone
    from tests.helpers import random_bias_set, save_tiny_backbone

    torch.set_num_threads(1)
    backbone = load_backbone(str(save_tiny_backbone(work / "backbone")), device="cpu")
    replicas = {}
    for n in sizes:
        started = time.perf_counter()
        root = build(work / f"store-{n}", backbone.spec, n)
        built_s = time.perf_counter() - started
        started = time.perf_counter()
        generation, catalog = FilesystemStore(root).catalog()
        catalog_s = time.perf_counter() - started
        started = time.perf_counter()
        scanned = {name: (root / "tasks" / name / "CURRENT").read_text() for name in os.listdir(root / "tasks")}
        scan_s = time.perf_counter() - started
        assert len(catalog) == len(scanned) == n
        emit({"bench": "store_sync", "tasks": n, "build_s": round(built_s, 1), "catalog_s": round(catalog_s, 4),
              "scan_s": round(scan_s, 4)})
        sync = replica(root, backbone)
        sync.generation = generation  # caught up, engine empty: see the docstring
        replicas[n] = sync

    writers = {n: FilesystemStore(sync.store.root) for n, sync in replicas.items()}
    times: dict[int, list[float]] = {n: [] for n in replicas}
    for i in range(changes):  # interleaved: every size sees the same box conditions
        for n, sync in replicas.items():
            data = dumps(random_bias_set(backbone.spec, "task-000000", seed=i + 1))
            writers[n].put(validate_upload(data, backbone.spec))
            started = time.perf_counter()
            assert sync.poll() == 1
            times[n].append(time.perf_counter() - started)
    medians = {n: statistics.median(t) * 1000 for n, t in times.items()}
    small, large = min(medians), max(medians)
    emit({"bench": "store_sync_apply_one", "apply_one_ms_median": {n: round(m, 2) for n, m in medians.items()},
          "apply_one_ms_max": {n: round(max(t) * 1000, 2) for n, t in times.items()},
          f"ratio_{large}_vs_{small}": round(medians[large] / medians[small], 2), "changes": changes})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 100_000])
    parser.add_argument("--startup-sizes", type=int, nargs="*", default=[1000, 10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3, help="start-ups per size and mode (interleaved)")
    parser.add_argument("--eager-max", type=int, default=10_000, help="largest store also started eagerly")
    parser.add_argument("--backbone", default="minilm", help="start-up backbone: minilm (packaged) or a path")
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--work", type=Path, default=None, help="where the stores are built (default: a temp folder)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bitfit-store-sync-", dir=args.work))
    try:
        if args.startup_sizes:
            startup(work, sorted(args.startup_sizes), args.rounds, args.eager_max, args.backbone)
        if args.sizes:
            apply_one(work, sorted(args.sizes), args.changes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
