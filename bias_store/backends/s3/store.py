"""S3 backend: any S3-compatible object store, through boto3, with no lock service.

Layout under ``s3://bucket/prefix/``::

    tasks/<name>/v000007.safetensors   immutable: created with If-None-Match: *, never overwritten
    tasks/<name>/CURRENT               {"version", "sha256", "last_version", "generation"}; replaced with If-Match: <etag>
    log/000000000042.json              one Change per mutation, created with If-None-Match: *
    snapshots/000000001000.json        the catalog at a round generation (see changelog.py)

Writers serialise on conditional writes: a version number, a log generation and a pointer
replacement each succeed for exactly one writer; the loser re-reads and tries again, so
no change is dropped. A mutation goes in this order:

1. a put *reserves* its version number by raising the pointer's ``last_version`` (a
   conditional replace), so a number is never handed out twice, even after keep-N pruning
   or a delete removed the object that once had it;
2. it creates the version object (immutable);
3. it appends its change to the log, which gives it a generation;
4. it *settles* the pointer: the pointer moves to this change only if the generation it
   already names is older. Two writers may settle in either order; the pointer always
   ends on the change the log holds last for the task, which is what every replica
   applies.

A deleted task keeps a tombstone pointer (version null) that remembers its last version
number. A writer that dies between 3 and 4 leaves the pointer one change behind the log;
the next mutation of the task settles past it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from bias_store.backends.base import META_CACHE_SIZE, StoreBase
from bias_store.backends.s3.cache import DiskCache
from bias_store.backends.s3.objects import S3Objects, S3Timeouts
from bias_store.changelog import COMPACT_EVERY, Catalog, Change, ChangeLog
from bias_store.errors import ConcurrentUpdate, CorruptTask, TaskNotFound, VersionNotFound
from bias_store.store import TaskRecord
from bias_store.validate import ValidatedUpload

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 50  # pointer races lost in a row before a writer gives up with 409
# Versions that mutations under way still need, kept in the pointer so that keep-N pruning
# skips them. A writer that died leaves its number here until this many newer ones push it
# out (then its object is pruned like any other).
MAX_PENDING = 64


class S3Store(StoreBase):
    def __init__(self, objects: S3Objects, keep_versions: int = 5, compact_every: int = COMPACT_EVERY,
                 meta_cache_size: int = META_CACHE_SIZE, cache: DiskCache | None = None) -> None:
        super().__init__(keep_versions, meta_cache_size)
        self.objects, self.cache = objects, cache  # cache: the local disk tier of version files
        self.log = ChangeLog(objects, compact_every, skip_damaged=True)

    @classmethod
    def from_url(cls, url: str, keep_versions: int = 5, endpoint_url: str | None = None,
                 timeouts: S3Timeouts | None = None, cache: DiskCache | None = None) -> S3Store:
        return cls(S3Objects.from_url(url, endpoint_url, timeouts), keep_versions, cache=cache)

    def __repr__(self) -> str:
        return f"S3Store({self.objects.url!r})"

    # -- keys and pointers ---------------------------------------------------------------
    @staticmethod
    def _version_key(name: str, version: int) -> str:
        return f"tasks/{name}/v{version:06d}.safetensors"

    def _raw_pointer(self, name: str, repair: bool = False) -> tuple[dict | None, str | None]:
        """The task's pointer and its ETag; (None, None) if it never existed. A damaged one is
        that task's CorruptTask, or with ``repair`` (a writer) a tombstone past every kept version."""
        found = self.objects.get(f"tasks/{name}/CURRENT")
        if found is None:
            return None, None
        body, etag = found
        try:
            return _parse_pointer(body), etag
        except ValueError as exc:
            if not repair:
                raise CorruptTask(name, f"its pointer is damaged ({exc})") from None
            log.warning("task %s: damaged pointer (%s) replaced", name, exc)
            return {"version": None, "sha256": None, "generation": 0, "last_version": max(self._versions(name), default=0)}, etag

    # -- what the base reads through -------------------------------------------------------
    def _task_names(self) -> list[str]:
        return sorted(self.catalog()[1])

    def _current(self, name: str) -> tuple[int, str] | None:
        pointer = self._raw_pointer(name)[0]
        if pointer is None or pointer["version"] is None:
            return None
        return pointer["version"], pointer["sha256"]

    def _versions(self, name: str) -> list[int]:
        keys = self.objects.list(f"tasks/{name}/v")
        return sorted(int(k.rsplit("/v", 1)[1].split(".")[0]) for k in keys)

    def _load(self, name: str, version: int) -> bytes | None:
        data = self.cache.get(name, version) if self.cache is not None else None
        if data is None:
            found = self.objects.get(self._version_key(name, version))
            if found is None:
                return None
            data = found[0]
            if self.cache is not None:
                self.cache.put(name, version, data)
        return data

    def _live_version(self, name: str) -> int:
        """The version a live task serves; TaskNotFound otherwise."""
        current = self._pointer(name)
        if current is None:
            raise TaskNotFound(name, self._hint())
        return current[0]

    def generation(self) -> int:
        return self.log.head()

    def changes(self, after: int) -> list[Change]:
        return self.log.changes(after)

    def catalog(self) -> tuple[int, Catalog]:
        return self.log.catalog()

    # -- mutations -----------------------------------------------------------------------
    def put(self, upload: ValidatedUpload) -> TaskRecord:
        name, data = upload.name, upload.data
        sha = hashlib.sha256(data).hexdigest()
        version = self._reserve(name)
        # The number is ours alone; a key already there can only be a leftover of a writer
        # that died in an older protocol: take another number.
        while not self.objects.create(self._version_key(name, version), data, {"sha256": sha}):
            version = self._reserve(name)
        if self.cache is not None:
            self.cache.put(name, version, data)
        generation = self.log.append(name, version, sha)
        self._settle(name, generation, {"version": version, "sha256": sha}, done=version)
        self._prune(name, keep_also=version)
        log.info("stored task %s version %d (%d bytes, generation %d)", name, version, len(data), generation)
        return self._stored(upload, version, sha, generation)

    def delete(self, name: str) -> int:
        try:
            live = self._live_version(name)
        except CorruptTask:  # a damaged pointer: deleting the task repairs it
            live = max(self._versions(name), default=0)
        generation = self.log.append(name, None, None)
        self._settle(name, generation, {"version": None, "sha256": None})
        # The tombstone hides them; free the space. Only up to the version that was live: a
        # put under way holds a higher number, and its object must survive.
        for version in self._versions(name):
            if version <= live:
                self.objects.delete(self._version_key(name, version))
        self.meta.forget(name)
        log.info("deleted task %s (generation %d)", name, generation)
        return generation

    def rollback(self, name: str, version: int, check: Callable[[bytes], object] | None = None) -> TaskRecord:
        self._live_version(name)
        self._swap_pointer(name, lambda p: {**p, "pending": _pending(p) + [version]} if p else None)  # not pruned meanwhile
        try:
            return self._rollback(name, version, check)
        finally:
            self._swap_pointer(name, lambda p: _without(p, version))

    def _rollback(self, name: str, version: int, check: Callable[[bytes], object] | None) -> TaskRecord:
        if self.objects.metadata(self._version_key(name, version)).get("sha256") is None:
            raise VersionNotFound(name, version, self._versions(name))
        # The pointer names the sha256 of the very bytes ``check`` validated: a version
        # object replaced meanwhile (delete + re-upload) cannot be served under it.
        data = self.read(name, version)
        sha = hashlib.sha256(data).hexdigest()
        if check is not None:
            check(data)
        self._live_version(name)  # still live after the check
        generation = self.log.append(name, version, sha)
        self._settle(name, generation, {"version": version, "sha256": sha})
        log.info("rolled task %s back to version %d (generation %d)", name, version, generation)
        return self._record(name, version, sha, data, generation)

    def _reserve(self, name: str) -> int:
        """A version number no other writer gets: the pointer's ``last_version`` plus one."""
        taken: list[int] = []

        def bump(pointer: dict | None) -> dict:
            taken[:] = [_last(pointer) + 1]
            pending = (_pending(pointer) + taken)[-MAX_PENDING:]  # kept from pruning until settled
            return {"version": None, "sha256": None, "generation": 0, **(pointer or {}), "last_version": taken[0], "pending": pending}

        self._swap_pointer(name, bump)
        return taken[0]

    def _settle(self, name: str, generation: int, fields: dict, done: int | None = None) -> None:
        """Point the task at the change logged at ``generation`` unless a later one already is;
        ``done``: the put's version, no longer pending either way."""
        self._swap_pointer(name, lambda p: _without(p, done) if _generation(p) >= generation else {
            "last_version": _last(p), **fields, "generation": generation, "pending": _pending(_without(p, done) or p)})

    def _swap_pointer(self, name: str, new) -> None:
        """Replace the pointer with ``new(old)`` if nobody replaced it meanwhile; else re-read
        and redo. ``new`` returning None means nothing to write."""
        for _ in range(MAX_ATTEMPTS):
            pointer, etag = self._raw_pointer(name, repair=True)
            replacement = new(pointer)
            if replacement is None:
                return
            if self.objects.replace(f"tasks/{name}/CURRENT", json.dumps(replacement).encode(), etag):
                return
        raise ConcurrentUpdate(name, MAX_ATTEMPTS)

    def _prune(self, name: str, keep_also: int) -> None:
        versions = self._versions(name)
        old = versions[: max(0, len(versions) - self.keep_versions)]
        if not old:
            return
        # Read after the listing: a listed object's number was reserved (pending) before it
        # was created, so a put or rollback still under way, and the current version, are seen.
        pointer = self._raw_pointer(name)[0] or {}
        needed = {keep_also, pointer.get("version"), *_pending(pointer)}
        for version in old:
            if version not in needed:
                self.objects.delete(self._version_key(name, version))


def _parse_pointer(body: bytes) -> dict:
    """The pointer's fields, checked: ValueError if it is not what a writer wrote."""
    try:
        pointer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(pointer, dict):
        raise ValueError(f"not an object: {type(pointer).__name__}")
    version, sha = pointer.get("version"), pointer.get("sha256")
    whole = isinstance(pointer.get("last_version"), int) and isinstance(pointer.get("generation", 0), int)
    if not whole or not (version is None and sha is None or isinstance(version, int) and isinstance(sha, str)):
        raise ValueError(f"unexpected fields {sorted(pointer)}")
    return pointer


def _last(pointer: dict | None) -> int:
    return pointer["last_version"] if pointer else 0


def _pending(pointer: dict | None) -> list[int]:
    pending = (pointer or {}).get("pending")
    return [v for v in pending if isinstance(v, int)] if isinstance(pending, list) else []


def _without(pointer: dict | None, version: int | None) -> dict | None:
    """``pointer`` with ``version`` no longer pending; None when it was not (nothing to write)."""
    pending = _pending(pointer)
    if pointer is None or version not in pending:
        return None
    pending.remove(version)
    return {**pointer, "pending": pending}


def _generation(pointer: dict | None) -> int:
    return (pointer or {}).get("generation") or 0
