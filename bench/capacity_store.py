"""A folder store of up to a million real-size MiniLM tasks, for bench/capacity.py.

``distinct`` tasks get bias sets of their own (real MiniLM size, each with its own random
bias values, so every file and sha256 differs); every other task's version file is a hard
link to one of them, its header naming the task it was made for (a stored file's task name
is the folder's, as the server reads it: the header's own name is not checked against it).
The files and the change log's snapshot are written directly, as a store the server made
would hold them (no fsync, no per-task lock): minutes at a million tasks, not hours.
A finished store has a ``.complete`` marker and is reused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def task_name(i: int) -> str:
    return f"task-{i:07d}"


def _distinct_file(template: bytes, data_start: int, rng: np.random.Generator) -> bytes:
    """The template with new random bias values in its tensor bytes (the header unchanged)."""
    body = np.frombuffer(template, dtype=np.uint8, offset=data_start).copy().view(np.float32)
    body += rng.standard_normal(body.shape[0], dtype=np.float32) * np.float32(0.01)
    return template[:data_start] + body.tobytes()


def build(root: Path, spec, tasks: int, distinct: int, seed: int = 0) -> Path:
    """The store at ``root`` (reused when complete)."""
    from bias_store.changelog import Change, dump_snapshot
    from bias_store.format import dumps
    from tests.helpers import random_bias_set

    if (root / ".complete").exists():
        return root
    template = dumps(random_bias_set(spec, task_name(0), seed=seed))
    data_start = 8 + int.from_bytes(template[:8], "little")  # safetensors: u64 header length, header, data
    rng = np.random.default_rng(seed)
    catalog: dict[str, Change] = {}
    shas: list[str] = []
    for i in range(tasks):
        name = task_name(i)
        folder = root / "tasks" / name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "v000001.safetensors"
        if i < distinct:  # its own name in its header (same length: the offsets hold)
            data = _distinct_file(template.replace(task_name(0).encode(), name.encode()), data_start, rng)
            target.write_bytes(data)
            shas.append(hashlib.sha256(data).hexdigest())
            sha = shas[-1]
        else:
            source = i % distinct
            if not target.exists():
                os.link(root / "tasks" / task_name(source) / "v000001.safetensors", target)
            sha = shas[source]
        (folder / "CURRENT").write_text(f"1 {sha}")
        catalog[name] = Change(0, name, 1, sha)
    for sub in ("snapshots", "log", "pending"):
        (root / sub).mkdir(exist_ok=True)
    (root / "snapshots" / "000000000000.json").write_bytes(dump_snapshot(0, catalog))
    (root / ".complete").write_text(f"{tasks} tasks, {distinct} distinct\n")
    return root
