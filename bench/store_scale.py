"""The folder store at a million catalog entries: what a change costs, and one directory vs shards.

``puts``: a folder store whose change log's snapshot holds ``--entries`` tasks (the snapshot
written directly, as bench/store_sync.py does; the tasks' folders are not needed for it),
then ``--puts`` consecutive ``put``s of a tiny-backbone set (50 tasks in turn, keep 2),
each timed. Every 1,000th change makes a snapshot of the whole catalog: with it written
inside the put (under the store lock) the put that crosses the round waits for it.
One JSON line: p50/p99/max of a put, the number of puts over 1 s, the wall time.

``dirs``: ``--entries`` task folders (each a CURRENT file) in one directory
(``tasks/<name>/``) against 256 shards (``tasks/<2 hex>/<name>/``), then, on a dropped page
cache where the OS allows it, the median/p99 of: reading a random task's CURRENT, listing
a random task's folder, creating a new task's folder + CURRENT (a put's folder work).

    .venv/bin/python -m bench.store_scale puts --entries 1000000 --puts 10000 --label after
    .venv/bin/python -m bench.store_scale dirs --entries 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import emit


def _upload(name: str, seed: int, spec):
    from bias_store import dumps, validate_upload
    from tests.helpers import random_bias_set

    return validate_upload(dumps(random_bias_set(spec, name, seed=seed)), spec)


def puts(entries: int, count: int, label: str, work: Path) -> dict:
    try:
        from bias_store.backends.folder import FilesystemStore
    except ImportError:  # the code before bias_store/backends/ (a "before" run)
        from bias_store.filesystem import FilesystemStore
    from bias_store.changelog import Change, dump_snapshot
    from engine import load_backbone
    from tests.helpers import save_tiny_backbone

    spec = load_backbone(str(save_tiny_backbone(work / "tiny")), device="cpu").spec
    root = work / "store"
    for sub in ("tasks", "snapshots", "log", "pending"):
        (root / sub).mkdir(parents=True)
    catalog = {f"t{i:07d}": Change(0, f"t{i:07d}", 1, hashlib.sha256(b"%d" % i).hexdigest()) for i in range(entries)}
    (root / "snapshots" / "000000000000.json").write_bytes(dump_snapshot(0, catalog))
    del catalog
    uploads = [_upload(f"put-{i}", i, spec) for i in range(50)]
    store = FilesystemStore(root, keep_versions=2)
    times = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        store.put(uploads[i % len(uploads)])
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - started
    if hasattr(store.log, "wait_compacted"):
        store.log.wait_compacted()
    times.sort()
    return {"case": "puts", "label": label, "entries": entries, "puts": count, "wall_s": round(wall, 1),
            "p50_ms": round(statistics.median(times) * 1000, 2), "p99_ms": round(times[int(0.99 * len(times))] * 1000, 2),
            "max_ms": round(times[-1] * 1000, 1), "over_1s": sum(t > 1 for t in times),
            "snapshots": sorted(os.listdir(root / "snapshots"))}


def _folder(tasks: Path, name: str, sharded: bool) -> Path:
    return tasks / hashlib.sha256(name.encode()).hexdigest()[:2] / name if sharded else tasks / name


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def dirs(entries: int, probes: int, work: Path) -> list[dict]:
    out = []
    for sharded in (False, True):
        tasks = work / ("sharded" if sharded else "flat")
        started = time.perf_counter()
        for i in range(entries):
            folder = _folder(tasks, f"t{i:07d}", sharded)
            folder.mkdir(parents=True)
            (folder / "CURRENT").write_bytes(b"1 " + b"0" * 64)
        build_s = time.perf_counter() - started
        cold = _drop_caches()
        rng = random.Random(0)
        read, listed, created = [], [], []
        for j in range(probes):
            name = f"t{rng.randrange(entries):07d}"
            t = time.perf_counter()
            (_folder(tasks, name, sharded) / "CURRENT").read_bytes()
            read.append(time.perf_counter() - t)
            t = time.perf_counter()
            os.listdir(_folder(tasks, name, sharded))
            listed.append(time.perf_counter() - t)
            t = time.perf_counter()
            folder = _folder(tasks, f"new-{j}", sharded)
            folder.mkdir(parents=True)
            (folder / "CURRENT").write_bytes(b"1 " + b"0" * 64)
            created.append(time.perf_counter() - t)
        line = {"case": "dirs", "layout": "sharded-256" if sharded else "one-directory", "entries": entries,
                "build_s": round(build_s, 1), "page_cache_dropped": cold}
        for what, times in (("read_current", read), ("list_task", listed), ("create_task", created)):
            times.sort()
            line[f"{what}_p50_us"] = round(statistics.median(times) * 1e6, 1)
            line[f"{what}_p99_us"] = round(times[int(0.99 * len(times))] * 1e6, 1)
        out.append(line)
        shutil.rmtree(tasks)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=["puts", "dirs"])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--puts", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=2_000)
    parser.add_argument("--label", default="")
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="store-scale-"))
    try:
        lines = [puts(args.entries, args.puts, args.label, work)] if args.case == "puts" else dirs(args.entries, args.probes, work)
        for line in lines:
            emit({"bench": "store_scale", **line})
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
