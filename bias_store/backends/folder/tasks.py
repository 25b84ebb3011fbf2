"""The task folders of the filesystem store, read without the lock.

    tasks/<name>/v000007.safetensors   a version, never modified once written
    tasks/<name>/CURRENT               "<version> <sha256>", replaced atomically

These functions only read: a version file is written before CURRENT points at it, so a
reader that takes CURRENT once and checks the bytes' sha256 needs no lock.
"""

from __future__ import annotations

import contextlib
import os
import re
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


def task_names(tasks_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(tasks_dir) if not n.startswith("."))


def read_current(tasks_dir: Path, name: str) -> tuple[int, str] | None:
    """CURRENT as (version, sha256); None while the task does not exist; CorruptTask if unreadable."""
    task_dir = tasks_dir / name
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


def current_catalog(tasks_dir: Path) -> Catalog:
    """The catalog the CURRENT files say (at generation 0), the truth the change log records.
    Unreadable tasks are left out: ``list()`` reports them and a PUT or DELETE repairs them."""
    catalog = {}
    for name in task_names(tasks_dir):
        with contextlib.suppress(CorruptTask):
            current = read_current(tasks_dir, name)
            if current is not None:
                catalog[name] = Change(0, name, *current)
    return catalog
