"""Filesystem backend: one folder, safe across threads, processes and crashes.

Layout under ``root``::

    .lock                         flock'ed by every mutation (threads and processes)
    tasks/.layout                 "sharded 256" (a store made before shards has none: tasks/<name>/)
    tasks/<shard>/<name>/v000007.safetensors   <shard>: 2 hex digits of sha256(name) (tasks.py)
    tasks/<shard>/<name>/CURRENT  "<version> <sha256>", replaced atomically
    log/000000000042.json         the change log: one entry per mutation (bias_store/changelog.py)
    snapshots/000000001000.json   the catalog at a round generation
    pending/<name>                a mutation of the task under way (crash checks: recovery.py)

Every write is temp file + fsync + rename + fsync(dir), so a crash at any moment leaves a
task at its old or its new version. A version file is written before CURRENT points at
it, and is never modified afterwards, so readers need no lock: a read takes CURRENT once
and checks the file's sha256 against it (a concurrent rollback or delete makes it retry).
The log entry is appended under the same lock right after CURRENT changes.

One bad task never stops the store: a task whose files cannot be read back is reported
(``CorruptTask``, ``problems()``) and skipped, and every other task lists and loads.
Files are 0640 and folders 0750 whatever the umask; symlinks inside the store are
refused; leftovers of a crash (temp files, ``.trash``) are removed when a store opens,
checking only the tasks a crashed writer was changing (recovery.py). The task folders are read
by tasks.py; reads, listing and records are the shared ones of ``backends/base.py``.
A store that cannot be written raises ``StoreUnavailable`` with the OS's reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from bias_store.backends.base import META_CACHE_SIZE, StoreBase
from bias_store.backends.folder import migrate, recovery
from bias_store.backends.folder import tasks as fs_tasks
from bias_store.backends.folder.files import atomic_write, fsync_dir, make_dir, read_file, writing
from bias_store.backends.folder.objects import FolderObjects
from bias_store.changelog import COMPACT_EVERY, Catalog, Change, ChangeLog, DamagedLog
from bias_store.errors import CorruptTask, StoreUnavailable, TaskNotFound, VersionNotFound
from bias_store.store import TaskRecord
from bias_store.validate import TASK_NAME, ValidatedUpload

log = logging.getLogger(__name__)


class FilesystemStore(StoreBase):
    def __init__(self, root: str | os.PathLike, keep_versions: int = 5, compact_every: int = COMPACT_EVERY,
                 meta_cache_size: int = META_CACHE_SIZE) -> None:
        super().__init__(keep_versions, meta_cache_size)
        self.root = Path(root)
        self.tasks_dir = self.root / "tasks"
        if (self.root / migrate.STAGING).exists():
            raise StoreUnavailable(f"store {self.root}: a `bitfit store migrate` did not finish; run it again")
        if not self.tasks_dir.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            migrate.new_tasks_dir(self.root)
        self.folders = fs_tasks.TaskFolders(self.tasks_dir)
        if not (self.root / ".lock").exists():
            atomic_write(self.root / ".lock", b"", durable=False)
        self._thread_lock = threading.Lock()
        self.log = ChangeLog(FolderObjects(self.root), compact_every)
        recovery.check_on_open(self.root, self.folders, self.log, self._locked)

    def __repr__(self) -> str:
        return f"FilesystemStore({str(self.root)!r})"

    # -- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        with self._thread_lock, open(self.root / ".lock", "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.folders.refresh()  # a migration under the lock may have sharded the folders
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- what the base reads through -------------------------------------------------------
    def _task_names(self) -> list[str]:
        return fs_tasks.task_names(self.folders)

    def _current(self, name: str) -> tuple[int, str] | None:
        current = fs_tasks.read_current(self.folders, name)
        if current is None and self.folders.refresh():  # the store was migrated to shards meanwhile
            current = fs_tasks.read_current(self.folders, name)
        return current

    def _versions(self, name: str) -> list[int]:
        return fs_tasks.versions(self.folders.dir(name))

    def _load(self, name: str, version: int) -> bytes | None:
        task_dir = self.folders.dir(name)
        if task_dir.is_symlink():
            raise CorruptTask(name, "its folder is a symlink (refused)")
        try:
            return read_file(fs_tasks.version_file(task_dir, version))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise CorruptTask(name, f"version {version} cannot be read ({exc.strerror})") from None

    def read(self, name: str, version: int) -> bytes:
        """As the base's, but a task whose CURRENT is damaged is CorruptTask here too: in a
        folder CURRENT is the truth the log records, and reading it is one small local read."""
        if self._pointer(name) is None:
            raise TaskNotFound(name)
        return super().read(name, version)

    def _existing_task_dir(self, name: str) -> Path:
        """The folder of a task that exists now; TaskNotFound otherwise (bad names included)."""
        if self._pointer(name) is None:
            raise TaskNotFound(name, self._hint())
        return self.folders.dir(name)

    def writable(self) -> bool:
        """Whether mutations can be stored now (False on a read-only or full-permission-denied store)."""
        return os.access(self.tasks_dir, os.W_OK) and os.access(self.root / ".lock", os.R_OK)

    def generation(self) -> int:
        return self.log.head()

    def changes(self, after: int) -> list[Change]:
        return self.log.changes(after)

    def catalog(self) -> tuple[int, Catalog]:
        try:
            return self.log.catalog()
        except DamagedLog as exc:
            # The CURRENT files are the truth the log records: rebuild from them.
            log.error("store %s: %s; using the tasks' CURRENT files", self.root, exc)
            return self.log.head(), fs_tasks.current_catalog(self.folders)

    # -- mutations -----------------------------------------------------------------------
    def put(self, upload: ValidatedUpload) -> TaskRecord:
        name, payload = upload.name, upload.data
        sha = hashlib.sha256(payload).hexdigest()
        with writing(f"storing task {name}"), self._locked():
            task_dir = self.folders.dir(name)
            if task_dir.is_symlink():
                raise CorruptTask(name, "its folder is a symlink (refused)")
            with recovery.pending(self.root, name):
                make_dir(task_dir.parent)  # its shard (the tasks folder itself in a store made before shards)
                make_dir(task_dir)
                try:
                    current = fs_tasks.read_current(self.folders, name)
                except CorruptTask:
                    current = None  # a damaged CURRENT: this upload repairs the task
                version = max(fs_tasks.versions(task_dir) + [current[0] if current else 0]) + 1
                atomic_write(fs_tasks.version_file(task_dir, version), payload)
                atomic_write(task_dir / "CURRENT", f"{version} {sha}".encode())
                generation = self.log.append(name, version, sha)
                self._prune(task_dir, keep_also=version)
        log.info("stored task %s version %d (%d bytes, generation %d)", name, version, len(payload), generation)
        return self._stored(upload, version, sha, generation)

    def delete(self, name: str) -> int:
        """Remove a task, a damaged one included (that is how an operator repairs it)."""
        with writing(f"deleting task {name}"), self._locked():
            task_dir = self.folders.dir(name)
            if not TASK_NAME.fullmatch(name) or not os.path.lexists(task_dir):
                raise TaskNotFound(name, self._hint())
            trash = self.root / ".trash"
            make_dir(trash)
            graveyard = trash / f"{name}-{uuid.uuid4().hex}"
            with recovery.pending(self.root, name):
                os.replace(task_dir, graveyard)  # atomic: the task is gone in one step (a symlink: the link only)
                fsync_dir(task_dir.parent)
                generation = self.log.append(name, None, None)
        self.meta.forget(name)
        if graveyard.is_symlink():
            graveyard.unlink()
        else:
            shutil.rmtree(graveyard, ignore_errors=True)
        log.info("deleted task %s (generation %d)", name, generation)
        return generation

    def rollback(self, name: str, version: int, check: Callable[[bytes], object] | None = None) -> TaskRecord:
        """Serve a kept version again. ``check(data)`` (the caller's validation) runs on the
        very bytes switched to, under the store lock, so nothing can change in between."""
        with writing(f"rolling back task {name}"), self._locked():
            task_dir = self._existing_task_dir(name)
            try:
                data = read_file(fs_tasks.version_file(task_dir, version))
            except FileNotFoundError:
                raise VersionNotFound(name, version, fs_tasks.versions(task_dir)) from None
            if check is not None:
                check(data)
            sha = hashlib.sha256(data).hexdigest()
            with recovery.pending(self.root, name):
                atomic_write(task_dir / "CURRENT", f"{version} {sha}".encode())
                generation = self.log.append(name, version, sha)
        log.info("rolled task %s back to version %d (generation %d)", name, version, generation)
        return self._record(name, version, sha, data, generation)

    def _prune(self, task_dir: Path, keep_also: int) -> None:
        versions = fs_tasks.versions(task_dir)
        for v in versions[: max(0, len(versions) - self.keep_versions)]:
            if v != keep_also:
                fs_tasks.version_file(task_dir, v).unlink(missing_ok=True)
