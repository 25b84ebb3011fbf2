"""What every backend shares: the metadata cache, reads, ``list``/``problems`` and record building.

A backend says how to find a task's current pointer, its kept versions and a version's
bytes (``_current``, ``_versions``, ``_load``, ``_task_names``); everything built from those
is written here once, so the folder and S3 stores cannot drift apart.

Reads take no lock: a version's bytes never change once written and the pointer is
replaced atomically, so ``get`` takes the pointer once, reads the bytes it names and checks
their sha256; a concurrent rollback or delete makes it read again.
"""

from __future__ import annotations

import abc
import heapq
import threading
from collections import OrderedDict
from collections.abc import Iterable
from hashlib import sha256

from bias_store.errors import BiasStoreError, CorruptTask, TaskNotFound, VersionNotFound
from bias_store.format import BiasSetMeta, read_header
from bias_store.store import BiasStore, TaskRecord
from bias_store.validate import TASK_NAME, ValidatedUpload

META_CACHE_SIZE = 1024  # parsed headers kept, (name, sha256) -> metadata; least recently used go first
READ_ATTEMPTS = 3  # a read racing a rollback or delete retries this often before calling the task corrupt
HINT_NAMES = 20  # task names a TaskNotFound suggests


class MetaCache:
    """A bounded LRU of parsed bias-set headers, shared by the threads of one store."""

    def __init__(self, size: int = META_CACHE_SIZE) -> None:
        if size < 1:
            raise ValueError("the metadata cache needs room for at least one entry")
        self.size = size
        self._entries: OrderedDict[tuple[str, str], BiasSetMeta] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str]) -> BiasSetMeta | None:
        with self._lock:
            meta = self._entries.get(key)
            if meta is not None:
                self._entries.move_to_end(key)
            return meta

    def put(self, key: tuple[str, str], meta: BiasSetMeta) -> None:
        with self._lock:
            self._entries[key] = meta
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, name: str) -> None:
        """Drop every entry of a deleted task."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == name]:
                del self._entries[key]


class StoreBase(BiasStore):
    def __init__(self, keep_versions: int, meta_cache_size: int = META_CACHE_SIZE) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be >= 1 (the current version is always kept)")
        self.keep_versions = keep_versions
        self.meta = MetaCache(meta_cache_size)
        self._problems: dict[str, str] = {}  # task -> why it cannot be read (from the last list())

    # -- what a backend provides ------------------------------------------------------------
    @abc.abstractmethod
    def _task_names(self) -> Iterable[str]:
        """The names a listing walks (tasks that may be damaged included), sorted."""

    @abc.abstractmethod
    def _current(self, name: str) -> tuple[int, str] | None:
        """The task's pointer as (version, sha256); None while it does not exist; CorruptTask if unreadable."""

    @abc.abstractmethod
    def _versions(self, name: str) -> list[int]:
        """The versions kept, oldest first."""

    @abc.abstractmethod
    def _load(self, name: str, version: int) -> bytes | None:
        """A version's bytes; None if there is no such version; CorruptTask if it cannot be read."""

    # -- reads -----------------------------------------------------------------------------
    def _hint(self) -> list[str]:
        return heapq.nsmallest(HINT_NAMES, self.catalog()[1])

    def _pointer(self, name: str) -> tuple[int, str] | None:
        return self._current(name) if TASK_NAME.fullmatch(name) else None

    def list(self) -> list[TaskRecord]:
        """Every readable task at its current version; the others are in ``problems()``."""
        records, problems = [], {}
        for name in self._task_names():
            try:
                records.append(self.get(name)[0])
            except TaskNotFound:
                continue  # a task being created or deleted
            except (CorruptTask, VersionNotFound) as exc:
                problems[name] = str(exc)
        self._problems = problems
        return records

    def problems(self) -> dict[str, str]:
        """Tasks the last ``list()`` could not read, with the reason."""
        return dict(self._problems)

    def get(self, name: str, version: int | None = None) -> tuple[TaskRecord, bytes]:
        """One version's record and bytes; CorruptTask when the current one cannot be read back."""
        for _ in range(READ_ATTEMPTS):
            current = self._pointer(name)
            if current is None:
                raise TaskNotFound(name, self._hint())
            wanted = version if version is not None else current[0]
            data = self._load(name, wanted)
            if data is None:
                if version is not None:
                    raise VersionNotFound(name, version, self._versions(name))
                continue  # a rollback or delete moved the pointer meanwhile: read it again
            sha = sha256(data).hexdigest()
            if version is None and sha != current[1]:
                continue  # the pointer moved between the two reads
            return self._record(name, wanted, sha, data), data
        if version is None:
            raise CorruptTask(name, "its pointer names a version whose file is missing or has other bytes")
        raise CorruptTask(name, f"version {version} kept changing while read")

    def read(self, name: str, version: int) -> bytes:
        """The bytes of one version, neither parsed nor hashed: the caller checks them once
        against the sha256 its change log entry names."""
        data = self._load(name, version) if TASK_NAME.fullmatch(name) else None
        if data is None:
            if self._pointer(name) is None:
                raise TaskNotFound(name)
            raise VersionNotFound(name, version, self._versions(name))
        return data

    # -- records ---------------------------------------------------------------------------
    def _meta_of(self, name: str, version: int, sha: str, data: bytes) -> BiasSetMeta:
        meta = self.meta.get((name, sha))
        if meta is None:
            try:
                meta = BiasSetMeta.from_header(read_header(data).get("__metadata__"))
            except BiasStoreError as exc:
                raise CorruptTask(name, f"version {version}'s stored file is damaged ({exc})") from None
            self.meta.put((name, sha), meta)
        return meta

    def _record(self, name: str, version: int, sha: str, data: bytes, generation: int = 0) -> TaskRecord:
        meta = self._meta_of(name, version, sha, data)
        return TaskRecord(name, version, sha, len(data), meta, tuple(self._versions(name)), generation)

    def _stored(self, upload: ValidatedUpload, version: int, sha: str, generation: int) -> TaskRecord:
        """The record of a put: the upload's header was parsed already, so it is not read again."""
        self.meta.put((upload.name, sha), upload.bias_set.meta)
        return self._record(upload.name, version, sha, upload.data, generation)
