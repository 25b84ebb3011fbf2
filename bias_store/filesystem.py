"""Filesystem backend: one folder, safe across threads, processes and crashes.

Layout under ``root``::

    .lock                         flock'ed by every mutation (threads and processes)
    tasks/<name>/v000007.safetensors
    tasks/<name>/CURRENT          "<version> <sha256>", replaced atomically
    log/000000000042.json         the change log: one entry per mutation (changelog.py)
    snapshots/000000001000.json   the catalog at a round generation

Every write is temp file + fsync + rename + fsync(dir), so a crash at any moment leaves a
task at its old or its new version. A version file is written before CURRENT points at
it, and is never modified afterwards, so readers need no lock. The log entry is
appended under the same lock right after CURRENT changes.
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
from pathlib import Path

from bias_store.changelog import COMPACT_EVERY, Catalog, Change, ChangeLog
from bias_store.errors import TaskNotFound, VersionNotFound
from bias_store.folder_objects import FolderObjects
from bias_store.format import BiasSetMeta, read_header
from bias_store.store import BiasStore, TaskRecord
from bias_store.validate import TASK_NAME, ValidatedUpload

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    ``durable`` also fsyncs the file and its folder, so the new file survives a crash;
    a mere change signal (GENERATION) does not need that.
    """
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if durable:
        _fsync_dir(path.parent)


class FilesystemStore(BiasStore):
    def __init__(self, root: str | os.PathLike, keep_versions: int = 5, compact_every: int = COMPACT_EVERY) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be >= 1 (the current version is always kept)")
        self.root = Path(root)
        self.tasks_dir = self.root / "tasks"
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        (self.root / ".lock").touch(exist_ok=True)
        self.keep_versions = keep_versions
        self._thread_lock = threading.Lock()
        self._meta_cache: dict[tuple[str, str], BiasSetMeta] = {}  # (name, sha256) -> metadata
        self.log = ChangeLog(FolderObjects(self.root), compact_every)
        if not (self.root / "log").is_dir():
            self._start_log()

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

    def _start_log(self) -> None:
        """A store made before the change log: its tasks become the snapshot at generation 0."""
        with self._locked():
            if (self.root / "log").is_dir():
                return  # another process did it first
            catalog = {}
            for name in os.listdir(self.tasks_dir):
                current = self._current(name)
                if current is not None:
                    catalog[name] = Change(0, name, *current)
            self.log.write_snapshot(0, catalog)
            (self.root / "log").mkdir()
            (self.root / "GENERATION").unlink(missing_ok=True)  # the old change signal
        log.info("store %s: change log started with %d tasks", self.root, len(catalog))

    # -- paths and reads -----------------------------------------------------------------
    def _existing_task_dir(self, name: str) -> Path:
        """The folder of a task that exists now; TaskNotFound otherwise (bad names included)."""
        if not TASK_NAME.fullmatch(name) or self._current(name) is None:
            raise TaskNotFound(name, sorted(self.catalog()[1])[:20])
        return self.tasks_dir / name

    @staticmethod
    def _version_file(task_dir: Path, version: int) -> Path:
        return task_dir / f"v{version:06d}.safetensors"

    def _versions(self, task_dir: Path) -> list[int]:
        try:
            names = os.listdir(task_dir)
        except FileNotFoundError:
            return []
        return sorted(int(n[1:7]) for n in names if n.startswith("v") and n.endswith(".safetensors"))

    def _current(self, name: str) -> tuple[int, str] | None:
        try:
            version, sha = (self.tasks_dir / name / "CURRENT").read_text().split()
            return int(version), sha
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None

    def _record(self, name: str, version: int, sha: str, data: bytes | None = None) -> TaskRecord:
        task_dir = self.tasks_dir / name
        path = self._version_file(task_dir, version)
        meta = self._meta_cache.get((name, sha))
        if meta is None:
            raw = data if data is not None else path.read_bytes()
            meta = BiasSetMeta.from_header(read_header(raw).get("__metadata__"))
            self._meta_cache[(name, sha)] = meta
        size = len(data) if data is not None else path.stat().st_size
        return TaskRecord(name, version, sha, size, meta, tuple(self._versions(task_dir)))

    def list(self) -> list[TaskRecord]:
        records = []
        for name in sorted(os.listdir(self.tasks_dir)):
            current = self._current(name)
            if current is None:
                continue  # a task being created, or a stray folder
            with contextlib.suppress(FileNotFoundError):  # deleted while we listed
                records.append(self._record(name, *current))
        return records

    def generation(self) -> int:
        return self.log.head()

    def changes(self, after: int) -> list[Change]:
        return self.log.changes(after)

    def catalog(self) -> tuple[int, Catalog]:
        return self.log.catalog()

    def read(self, name: str, version: int) -> bytes:
        task_dir = self._existing_task_dir(name)
        try:
            return self._version_file(task_dir, version).read_bytes()
        except FileNotFoundError:
            raise VersionNotFound(name, version, self._versions(task_dir)) from None

    def get(self, name: str, version: int | None = None) -> tuple[TaskRecord, bytes]:
        task_dir = self._existing_task_dir(name)
        if version is None:
            version = self._current(name)[0]
        try:
            data = self._version_file(task_dir, version).read_bytes()
        except FileNotFoundError:
            raise VersionNotFound(name, version, self._versions(task_dir)) from None
        sha = hashlib.sha256(data).hexdigest()
        return self._record(name, version, sha, data), data

    # -- mutations -----------------------------------------------------------------------
    def put(self, upload: ValidatedUpload) -> TaskRecord:
        name, payload = upload.name, upload.data
        sha = hashlib.sha256(payload).hexdigest()
        self._meta_cache[(name, sha)] = upload.bias_set.meta  # already parsed: no second header read
        task_dir = self.tasks_dir / name
        with self._locked():
            task_dir.mkdir(exist_ok=True)
            versions = self._versions(task_dir)
            current = self._current(name)
            version = max(versions + [current[0] if current else 0]) + 1
            atomic_write(self._version_file(task_dir, version), payload)
            atomic_write(task_dir / "CURRENT", f"{version} {sha}".encode())
            generation = self.log.append(name, version, sha)
            self._prune(task_dir, keep_also=version)
        log.info("stored task %s version %d (%d bytes, generation %d)", name, version, len(payload), generation)
        return dataclasses.replace(self._record(name, version, sha, payload), generation=generation)

    def delete(self, name: str) -> int:
        with self._locked():
            task_dir = self._existing_task_dir(name)
            trash = self.root / ".trash"
            trash.mkdir(exist_ok=True)
            graveyard = trash / f"{name}-{uuid.uuid4().hex}"
            os.replace(task_dir, graveyard)  # atomic: the task is gone in one step
            _fsync_dir(self.tasks_dir)
            generation = self.log.append(name, None, None)
        shutil.rmtree(graveyard, ignore_errors=True)
        log.info("deleted task %s (generation %d)", name, generation)
        return generation

    def rollback(self, name: str, version: int) -> TaskRecord:
        with self._locked():
            task_dir = self._existing_task_dir(name)
            path = self._version_file(task_dir, version)
            if not path.exists():
                raise VersionNotFound(name, version, self._versions(task_dir))
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            atomic_write(task_dir / "CURRENT", f"{version} {sha}".encode())
            generation = self.log.append(name, version, sha)
        log.info("rolled task %s back to version %d (generation %d)", name, version, generation)
        return dataclasses.replace(self._record(name, version, sha, data), generation=generation)

    def _prune(self, task_dir: Path, keep_also: int) -> None:
        versions = self._versions(task_dir)
        for v in versions[: max(0, len(versions) - self.keep_versions)]:
            if v != keep_also:
                self._version_file(task_dir, v).unlink(missing_ok=True)

