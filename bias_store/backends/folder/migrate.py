"""Sharded task folders: a new store's tasks folder, and ``bitfit store migrate`` for an old one.

A store made now starts with ``tasks/.layout`` ("sharded 256"): the tasks folder appears
with its marker already inside (made aside, then renamed into place), so no process ever
sees it without one. A store made before shards keeps working as it is (``tasks/<name>/``);
``migrate`` moves its folders into shards, under the store's lock:

1. every ``tasks/<name>`` is renamed to ``tasks.sharding/<shard>/<name>`` (a rename: no
   bytes are copied, and a task named like a shard, ``ab``, cannot collide);
2. ``tasks.sharding/.layout`` is written, then ``tasks`` and ``tasks.sharding`` swap.

A crash at any step leaves ``tasks.sharding``: the store refuses to open until ``migrate``
runs again, which carries on where it stopped. Stop the servers of a store before migrating
it: a server that was running reads its folders from the new place at its next miss, but
a load under way meanwhile can fail once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from bias_store.backends.folder.files import atomic_write, fsync_dir, make_dir
from bias_store.backends.folder.tasks import LAYOUT, SHARDED, shard_of

STAGING = "tasks.sharding"


def new_tasks_dir(root: Path) -> None:
    """``root/tasks`` with its layout marker, made in one rename (another process may win)."""
    aside = root / f".tasks-{uuid.uuid4().hex}"
    make_dir(aside)
    try:
        atomic_write(aside / LAYOUT, SHARDED)
        try:
            os.rename(aside, root / "tasks")  # fails if another process made it first (it is not empty)
        except OSError:
            if not (root / "tasks").is_dir():
                raise
        else:
            fsync_dir(root)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _store_lock(root: Path) -> Iterator[None]:
    """The lock every mutation of the store takes (store.py flocks the same file)."""
    if not (root / ".lock").exists():
        atomic_write(root / ".lock", b"", durable=False)
    with open(root / ".lock", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(root: str | os.PathLike) -> int:
    """Move a flat store's task folders into shards; the number moved (0: already sharded)."""
    root = Path(root)
    tasks, staging = root / "tasks", root / STAGING
    if not staging.exists() and (tasks / LAYOUT).exists():
        return 0
    moved = 0
    with _store_lock(root):
        make_dir(staging)
        if tasks.is_dir() and (tasks / LAYOUT).exists():  # finished but for the staging folder's removal
            shutil.rmtree(staging, ignore_errors=True)
            return 0
        if tasks.is_dir():
            for entry in sorted(os.listdir(tasks)):
                if not entry.startswith("."):
                    shard = staging / shard_of(entry)
                    make_dir(shard)
                    os.rename(tasks / entry, shard / entry)
                    moved += 1
            for shard in staging.iterdir():
                if shard.is_dir():
                    fsync_dir(shard)
            atomic_write(staging / LAYOUT, SHARDED)
            old = root / f".tasks-flat-{uuid.uuid4().hex}"
            os.rename(tasks, old)
            shutil.rmtree(old, ignore_errors=True)  # only hidden leftovers (temp files) stayed in it
        elif not (staging / LAYOUT).exists():
            atomic_write(staging / LAYOUT, SHARDED)
        os.rename(staging, tasks)
        fsync_dir(root)
    return moved
