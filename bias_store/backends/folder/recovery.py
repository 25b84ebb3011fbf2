"""Putting a filesystem store right when it opens, after a crash or an older version.

- ``remove_leftovers``: temp files, ``.trash`` and task folders a killed writer never committed.
- ``repair_log``: a writer killed between changing a task's folder and appending its log
  entry leaves the log behind the folders (the truth); the missing entries are appended.
- ``start_log``: a store made before the change log gets one, its tasks as the snapshot at 0.

The cost is per interrupted mutation, not per task: each mutation first creates
``pending/<task>`` (durably, ``pending``) and removes it once the task's folder and the log
agree again, so ``check_on_open`` looks only at the marked tasks. Opening a store of
100,000 tasks therefore reads no task folder (it read every one: ~12 s on the shared box).
A store made by a version without markers (no ``pending/`` folder) is checked whole once,
then gets the folder; writers of such a version must not share the store afterwards, as
their crashes would leave no marker.

Each takes the store's lock (``locked``) for what it changes. A read-only store is left as
it is and served: the first two only log a warning when they cannot write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from bias_store.backends.folder import tasks as fs_tasks
from bias_store.backends.folder.files import atomic_write, make_dir, writing
from bias_store.changelog import ChangeLog
from bias_store.errors import BiasStoreError, CorruptTask

log = logging.getLogger(__name__)

Locker = Callable[[], AbstractContextManager]  # the store's exclusive lock (threads and processes)
PENDING = "pending"  # pending/<task>: a mutation of the task is under way (or was, when it crashed)


@contextlib.contextmanager
def pending(root: Path, name: str) -> Iterator[None]:
    """Mark ``name`` as being changed for the length of the block (call under the store lock)."""
    marker = root / PENDING / name
    make_dir(marker.parent)
    atomic_write(marker, b"")  # durable before the task's folder changes
    yield
    marker.unlink(missing_ok=True)  # a crash before this only costs one check at the next open


def check_on_open(root: Path, folders: fs_tasks.TaskFolders, changelog: ChangeLog, locked: Locker) -> None:
    """Everything an opening store checks, for the marked tasks only (all of them once, for
    a store made before the markers)."""
    marked = root / PENDING
    journaled = marked.is_dir()
    names = sorted(os.listdir(marked)) if journaled else None
    remove_leftovers(root, folders, locked, names)
    if not (root / "log").is_dir():
        start_log(root, folders, changelog, locked)
    if names != []:
        repair_log(root, folders, changelog, locked, names)
    if not journaled:
        with contextlib.suppress(OSError):  # a read-only store: checked whole at every open
            make_dir(marked)


def remove_leftovers(root: Path, folders: fs_tasks.TaskFolders, locked: Locker, names: list[str] | None = None) -> None:
    """Remove what a crashed writer left: temp files, .trash, task folders never committed
    (of the tasks ``names``; None: every task)."""
    try:
        with locked():
            leftovers = [p for folder in (root, root / "log", root / "snapshots") for p in folder.glob(".tmp-*")]
            task_dirs = folders.dirs() if names is None else (folders.dir(name) for name in names)
            for task_dir in task_dirs:
                if task_dir.is_dir() and not task_dir.is_symlink():
                    leftovers += task_dir.glob(".tmp-*")
                    if not any(task_dir.iterdir()) or all(p.name.startswith(".tmp-") for p in task_dir.iterdir()):
                        leftovers.append(task_dir)  # created, then the writer died before any version
            for path in leftovers:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            trash = root / ".trash"
            if trash.is_dir():
                leftovers.append(trash)
                shutil.rmtree(trash, ignore_errors=True)
    except OSError as exc:  # a read-only store serves as it is
        log.warning("store %s: crash leftovers not cleaned: %s", root, exc)
        return
    if leftovers:
        log.info("store %s: removed %d leftovers of an interrupted write", root, len(leftovers))


def start_log(root: Path, folders: fs_tasks.TaskFolders, changelog: ChangeLog, locked: Locker) -> None:
    """A store made before the change log: its tasks become the snapshot at generation 0."""
    with writing("starting the change log"), locked():
        if (root / "log").is_dir():
            return  # another process did it first
        catalog = fs_tasks.current_catalog(folders)
        changelog.write_snapshot(0, catalog)
        make_dir(root / "log")
        (root / "GENERATION").unlink(missing_ok=True)  # the old change signal
    log.info("store %s: change log started with %d tasks", root, len(catalog))


def repair_log(root: Path, folders: fs_tasks.TaskFolders, changelog: ChangeLog, locked: Locker, names: list[str] | None = None) -> None:
    """Log what a crash left unlogged, so the log agrees with the task folders again (for the
    tasks ``names``, whose pending markers are then removed; None: every task)."""
    try:
        with locked():
            _, logged = changelog.catalog()
            for name in sorted(set(fs_tasks.task_names(folders)) | set(logged)) if names is None else names:
                (root / PENDING / name).unlink(missing_ok=True)  # checked now, under the lock
                try:
                    current = fs_tasks.read_current(folders, name)
                except CorruptTask:
                    continue  # reported by list(); repaired by a PUT or DELETE
                entry = logged.get(name)
                if current is None and entry is not None:
                    changelog.append(name, None, None)
                elif current is not None and (entry is None or (entry.version, entry.sha256) != current):
                    changelog.append(name, *current)
                else:
                    continue
                log.warning("store %s: task %s was changed but not logged (a crash); logged now", root, name)
    except (OSError, BiasStoreError) as exc:  # a read-only store serves as it is
        log.warning("store %s: change log not checked against the tasks: %s", root, exc)
