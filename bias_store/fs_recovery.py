"""Putting a filesystem store right when it opens, after a crash or an older version.

- ``remove_leftovers``: temp files, ``.trash`` and task folders a killed writer never committed.
- ``repair_log``: a writer killed between changing a task's folder and appending its log
  entry leaves the log behind the folders (the truth); the missing entries are appended.
- ``start_log``: a store made before the change log gets one, its tasks as the snapshot at 0.

Each takes the store's lock (``locked``) for what it changes. A read-only store is left as
it is and served: the first two only log a warning when they cannot write.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from bias_store import fs_tasks
from bias_store.changelog import ChangeLog
from bias_store.errors import BiasStoreError, CorruptTask
from bias_store.fs_io import make_dir, writing

log = logging.getLogger(__name__)

Locker = Callable[[], AbstractContextManager]  # the store's exclusive lock (threads and processes)


def remove_leftovers(root: Path, tasks_dir: Path, locked: Locker) -> None:
    """Remove what a crashed writer left: temp files, .trash, task folders never committed."""
    try:
        with locked():
            leftovers = [p for folder in (root, root / "log", root / "snapshots") for p in folder.glob(".tmp-*")]
            for task_dir in tasks_dir.iterdir():
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


def start_log(root: Path, tasks_dir: Path, changelog: ChangeLog, locked: Locker) -> None:
    """A store made before the change log: its tasks become the snapshot at generation 0."""
    with writing("starting the change log"), locked():
        if (root / "log").is_dir():
            return  # another process did it first
        catalog = fs_tasks.current_catalog(tasks_dir)
        changelog.write_snapshot(0, catalog)
        make_dir(root / "log")
        (root / "GENERATION").unlink(missing_ok=True)  # the old change signal
    log.info("store %s: change log started with %d tasks", root, len(catalog))


def repair_log(root: Path, tasks_dir: Path, changelog: ChangeLog, locked: Locker) -> None:
    """Log what a crash left unlogged, so the log agrees with the task folders again."""
    try:
        with locked():
            _, logged = changelog.catalog()
            for name in sorted(set(fs_tasks.task_names(tasks_dir)) | set(logged)):
                try:
                    current = fs_tasks.read_current(tasks_dir, name)
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
