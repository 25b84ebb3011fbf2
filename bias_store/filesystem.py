"""Filesystem backend: one folder, safe across threads, processes and crashes.

Layout under ``root``::

    .lock                         flock'ed by every mutation (threads and processes)
    tasks/<name>/v000007.safetensors
    tasks/<name>/CURRENT          "<version> <sha256>", replaced atomically
    log/000000000042.json         the change log: one entry per mutation (changelog.py)
    snapshots/000000001000.json   the catalog at a round generation
    pending/<name>                a mutation of the task under way (crash checks: fs_recovery.py)

Every write is temp file + fsync + rename + fsync(dir), so a crash at any moment leaves a
task at its old or its new version. A version file is written before CURRENT points at
it, and is never modified afterwards, so readers need no lock: a read takes CURRENT once
and checks the file's sha256 against it (a concurrent rollback or delete makes it retry).
The log entry is appended under the same lock right after CURRENT changes.

One bad task never stops the store: a task whose files cannot be read back is reported
(``CorruptTask``, ``problems()``) and skipped, and every other task lists and loads.
Files are 0640 and folders 0750 whatever the umask; symlinks inside the store are
refused; leftovers of a crash (temp files, ``.trash``) are removed when a store opens,
checking only the tasks a crashed writer was changing (fs_recovery.py). The task folders are read by fs_tasks.py.
A store that cannot be written raises ``StoreUnavailable`` with the OS's reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from bias_store import fs_recovery, fs_tasks
from bias_store.changelog import COMPACT_EVERY, Catalog, Change, ChangeLog, DamagedLog
from bias_store.errors import BiasStoreError, CorruptTask, TaskNotFound, VersionNotFound
from bias_store.folder_objects import FolderObjects
from bias_store.format import BiasSetMeta, read_header
from bias_store.fs_io import atomic_write, fsync_dir, make_dir, read_file, writing  # noqa: F401 (atomic_write: re-exported)
from bias_store.store import BiasStore, TaskRecord
from bias_store.validate import TASK_NAME, ValidatedUpload

log = logging.getLogger(__name__)

META_CACHE_SIZE = 1024  # parsed headers kept (name, sha256) -> metadata; least recently used go first
READ_ATTEMPTS = 3  # a read racing a rollback or delete retries this often before calling the task corrupt


class FilesystemStore(BiasStore):
    def __init__(self, root: str | os.PathLike, keep_versions: int = 5, compact_every: int = COMPACT_EVERY) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be >= 1 (the current version is always kept)")
        self.root = Path(root)
        self.tasks_dir = self.root / "tasks"
        if not self.tasks_dir.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            make_dir(self.tasks_dir)
        if not (self.root / ".lock").exists():
            atomic_write(self.root / ".lock", b"", durable=False)
        self.keep_versions = keep_versions
        self._thread_lock = threading.Lock()
        self._meta_cache: OrderedDict[tuple[str, str], BiasSetMeta] = OrderedDict()
        self._problems: dict[str, str] = {}  # task -> why it cannot be read (from the last list())
        self.log = ChangeLog(FolderObjects(self.root), compact_every)
        fs_recovery.check_on_open(self.root, self.tasks_dir, self.log, self._locked)

    def __repr__(self) -> str:
        return f"FilesystemStore({str(self.root)!r})"

    # -- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        with self._thread_lock, open(self.root / ".lock", "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def recover(self) -> None:
        """Remove what a crashed writer left: temp files, .trash, task folders never committed."""
        fs_recovery.remove_leftovers(self.root, self.tasks_dir, self._locked)

    # -- paths and reads -----------------------------------------------------------------
    def _existing_task_dir(self, name: str) -> Path:
        """The folder of a task that exists now; TaskNotFound otherwise (bad names included)."""
        if not TASK_NAME.fullmatch(name) or fs_tasks.read_current(self.tasks_dir, name) is None:
            raise TaskNotFound(name, sorted(self.catalog()[1])[:20])
        return self.tasks_dir / name

    def _meta(self, name: str, sha: str, data: bytes) -> BiasSetMeta:
        key = (name, sha)
        meta = self._meta_cache.get(key)
        if meta is None:
            try:
                meta = BiasSetMeta.from_header(read_header(data).get("__metadata__"))
            except BiasStoreError as exc:
                raise CorruptTask(name, f"its stored file is damaged ({exc})") from None
            self._remember(key, meta)
        else:
            self._meta_cache.move_to_end(key)
        return meta

    def _remember(self, key: tuple[str, str], meta: BiasSetMeta) -> None:
        self._meta_cache[key] = meta
        while len(self._meta_cache) > META_CACHE_SIZE:
            self._meta_cache.popitem(last=False)

    def _record(self, name: str, version: int, sha: str, data: bytes) -> TaskRecord:
        meta = self._meta(name, sha, data)
        return TaskRecord(name, version, sha, len(data), meta, tuple(fs_tasks.versions(self.tasks_dir / name)))

    def list(self) -> list[TaskRecord]:
        """Every readable task at its current version; the others are in ``problems()``."""
        records, problems = [], {}
        for name in fs_tasks.task_names(self.tasks_dir):
            try:
                records.append(self.get(name)[0])
            except TaskNotFound:
                continue  # a task being created or deleted
            except (CorruptTask, VersionNotFound) as exc:
                problems[name] = str(exc)
        self._problems = problems
        return records

    def writable(self) -> bool:
        """Whether mutations can be stored now (False on a read-only or full-permission-denied store)."""
        return os.access(self.tasks_dir, os.W_OK) and os.access(self.root / ".lock", os.R_OK)

    def problems(self) -> dict[str, str]:
        """Tasks the last ``list()`` could not read, with the reason."""
        return dict(self._problems)

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
            return self.log.head(), fs_tasks.current_catalog(self.tasks_dir)

    def read(self, name: str, version: int) -> bytes:
        return self.get(name, version)[1]

    def get(self, name: str, version: int | None = None) -> tuple[TaskRecord, bytes]:
        """One version's record and bytes. CURRENT is read once per attempt and checked."""
        for _ in range(READ_ATTEMPTS):
            current = fs_tasks.read_current(self.tasks_dir, name) if TASK_NAME.fullmatch(name) else None
            if current is None:
                raise TaskNotFound(name, sorted(self.catalog()[1])[:20])
            wanted = version if version is not None else current[0]
            task_dir = self.tasks_dir / name
            try:
                data = read_file(fs_tasks.version_file(task_dir, wanted))
            except FileNotFoundError:
                if version is not None:
                    raise VersionNotFound(name, version, fs_tasks.versions(task_dir)) from None
                continue  # a rollback or delete moved CURRENT meanwhile: read it again
            except OSError as exc:
                raise CorruptTask(name, f"version {wanted} cannot be read ({exc.strerror})") from None
            sha = hashlib.sha256(data).hexdigest()
            if version is None and sha != current[1]:
                continue  # CURRENT moved between the two reads
            return self._record(name, wanted, sha, data), data
        if version is None:
            raise CorruptTask(name, "CURRENT names a version whose file is missing or has other bytes")
        raise CorruptTask(name, f"version {version} kept changing while read")

    # -- mutations -----------------------------------------------------------------------
    def put(self, upload: ValidatedUpload) -> TaskRecord:
        name, payload = upload.name, upload.data
        sha = hashlib.sha256(payload).hexdigest()
        task_dir = self.tasks_dir / name
        with writing(f"storing task {name}"), self._locked():
            if task_dir.is_symlink():
                raise CorruptTask(name, "its folder is a symlink (refused)")
            with fs_recovery.pending(self.root, name):
                make_dir(task_dir)
                try:
                    current = fs_tasks.read_current(self.tasks_dir, name)
                except CorruptTask:
                    current = None  # a damaged CURRENT: this upload repairs the task
                version = max(fs_tasks.versions(task_dir) + [current[0] if current else 0]) + 1
                atomic_write(fs_tasks.version_file(task_dir, version), payload)
                atomic_write(task_dir / "CURRENT", f"{version} {sha}".encode())
                generation = self.log.append(name, version, sha)
                self._prune(task_dir, keep_also=version)
        log.info("stored task %s version %d (%d bytes, generation %d)", name, version, len(payload), generation)
        self._remember((name, sha), upload.bias_set.meta)  # already parsed: no second header read
        return dataclasses.replace(self._record(name, version, sha, payload), generation=generation)

    def delete(self, name: str) -> int:
        """Remove a task, a damaged one included (that is how an operator repairs it)."""
        with writing(f"deleting task {name}"), self._locked():
            task_dir = self.tasks_dir / name
            if not TASK_NAME.fullmatch(name) or not os.path.lexists(task_dir):
                raise TaskNotFound(name, sorted(self.state())[:20])
            trash = self.root / ".trash"
            make_dir(trash)
            graveyard = trash / f"{name}-{uuid.uuid4().hex}"
            with fs_recovery.pending(self.root, name):
                os.replace(task_dir, graveyard)  # atomic: the task is gone in one step (a symlink: the link only)
                fsync_dir(self.tasks_dir)
                generation = self.log.append(name, None, None)
        for key in [k for k in self._meta_cache if k[0] == name]:
            del self._meta_cache[key]
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
            with fs_recovery.pending(self.root, name):
                atomic_write(task_dir / "CURRENT", f"{version} {sha}".encode())
                generation = self.log.append(name, version, sha)
        log.info("rolled task %s back to version %d (generation %d)", name, version, generation)
        return dataclasses.replace(self._record(name, version, sha, data), generation=generation)

    def _prune(self, task_dir: Path, keep_also: int) -> None:
        versions = fs_tasks.versions(task_dir)
        for v in versions[: max(0, len(versions) - self.keep_versions)]:
            if v != keep_also:
                fs_tasks.version_file(task_dir, v).unlink(missing_ok=True)
