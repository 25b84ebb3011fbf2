"""The task folders of the filesystem store, read without the lock.

    tasks/.layout                          "sharded 256": the folders are in 256 shards
    tasks/<shard>/<name>/v000007.safetensors   a version, never modified once written
    tasks/<shard>/<name>/CURRENT               "<version> <sha256>", replaced atomically

``<shard>`` is the first two hex digits of the sha256 of the task's name
(``printf %s NAME | sha256sum | cut -c1-2``), so no folder holds more than ~1/256 of a
large catalog. A store made before shards (no ``.layout``) keeps its folders at
``tasks/<name>/`` and is read and written as it is, until ``bitfit store migrate``
(migrate.py) moves them. These functions only read: a version file is written before
CURRENT points at it, so a reader that takes CURRENT once and checks the bytes' sha256
needs no lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from bias_store.backends.folder.files import read_file
from bias_store.changelog import Catalog, Change
from bias_store.errors import CorruptTask

VERSION_FILE = re.compile(r"v(\d{6})\.safetensors")  # anything else (vbackup.safetensors) is not a version


def version_file(task_dir: Path, version: int) -> Path:
    return task_dir / f"v{version:06d}.safetensors"


def versions(task_dir: Path) -> list[int]:
    """The versions kept in a task's folder, oldest first; [] when the folder is gone."""
    try:
        names = os.listdir(task_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(m.group(1)) for n in names if (m := VERSION_FILE.fullmatch(n)))


LAYOUT = ".layout"
SHARDED = b"sharded 256\n"
SHARD = re.compile(r"[0-9a-f]{2}")


def shard_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:2]


class TaskFolders:
    """Where each task's folder is: ``tasks/<shard>/<name>`` or, in a store made before
    shards, ``tasks/<name>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sharded = self._read_layout()

    def _read_layout(self) -> bool:
        try:
            layout = (self.root / LAYOUT).read_bytes()
        except FileNotFoundError:
            return False
        if layout != SHARDED:
            raise ValueError(f"{self.root / LAYOUT} says {layout[:40]!r}; this version reads {SHARDED!r} or none")
        return True

    def refresh(self) -> bool:
        """Read the layout again (a migration may have sharded the store); True if it changed."""
        sharded = self._read_layout()
        changed, self.sharded = sharded != self.sharded, sharded
        return changed

    def dir(self, name: str) -> Path:
        return self.root / shard_of(name) / name if self.sharded else self.root / name

    def dirs(self) -> Iterator[Path]:
        """Every task folder (the shards' entries, or the flat folder's)."""
        if not self.sharded:
            yield from (p for p in self.root.iterdir() if not p.name.startswith("."))
            return
        for shard in sorted(self.root.iterdir()):
            if SHARD.fullmatch(shard.name) and shard.is_dir() and not shard.is_symlink():
                yield from (p for p in shard.iterdir() if not p.name.startswith("."))

    def names(self) -> list[str]:
        return sorted(p.name for p in self.dirs())


def task_names(folders: TaskFolders) -> list[str]:
    return folders.names()


def read_current(folders: TaskFolders, name: str) -> tuple[int, str] | None:
    """CURRENT as (version, sha256); None while the task does not exist; CorruptTask if unreadable."""
    task_dir = folders.dir(name)
    if task_dir.is_symlink():
        raise CorruptTask(name, "its folder is a symlink (refused)")
    try:
        raw = read_file(task_dir / "CURRENT")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CorruptTask(name, f"CURRENT cannot be read ({exc.strerror})") from None
    try:
        version, sha = raw.decode("ascii").split()
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(sha)
        return int(version), sha
    except ValueError:
        raise CorruptTask(name, "CURRENT is not '<version> <sha256>'") from None


def current_catalog(folders: TaskFolders) -> Catalog:
    """The catalog the CURRENT files say (at generation 0), the truth the change log records.
    Unreadable tasks are left out: ``list()`` reports them and a PUT or DELETE repairs them."""
    catalog = {}
    for name in task_names(folders):
        with contextlib.suppress(CorruptTask):
            current = read_current(folders, name)
            if current is not None:
                catalog[name] = Change(0, name, *current)
    return catalog
