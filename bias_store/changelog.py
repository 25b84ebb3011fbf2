"""The catalog's change log, shared by every backend.

Each mutation appends one ``Change`` with the next generation number. A replica keeps the
generation it has applied and reads only the entries after it, so keeping up costs per
change, not per task in the catalog. Every ``COMPACT_EVERY`` generations the writer that
appended the round number also writes a snapshot (the previous snapshot folded with the
entries since), so start-up reads one snapshot plus a short tail; entries older than the
previous snapshot are then deleted.

``ChangeLog`` keeps the entries as objects of any ``LogObjects`` (an S3 prefix, a folder):
an entry is created only if its key is free, so two writers can never both take one
generation; the loser takes the next one and nothing is overwritten.
"""

from __future__ import annotations

import gc
import json
import logging
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

import orjson

from bias_store.errors import BiasStoreError

log = logging.getLogger(__name__)

COMPACT_EVERY = 1000  # generations between snapshots; one compaction interval is kept as slack


class Change(NamedTuple):
    # A named tuple, not a dataclass: start-up builds one per task of the catalog
    # (100,000 at a time), and a tuple is made ~3x faster than a frozen dataclass.
    generation: int
    task: str
    version: int | None  # the task's current version from now on; None: the task was deleted
    sha256: str | None  # of that version's file (None when deleted)

    @property
    def deleted(self) -> bool:
        return self.version is None

    def to_json(self) -> bytes:
        return json.dumps({"generation": self.generation, "task": self.task, "version": self.version, "sha256": self.sha256}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Change:
        raw = json.loads(data)
        return cls(int(raw["generation"]), raw["task"], raw["version"], raw["sha256"])


# {task: its last change} at some generation; deleted tasks are left out.
Catalog = dict[str, Change]


class DamagedLog(BiasStoreError):
    """An entry or snapshot of the log cannot be parsed (a backend that has another source of truth rebuilds from it)."""


class LogTruncated(BiasStoreError):
    """The entries after a replica's generation were compacted away: reload the whole catalog."""

    def __init__(self, after: int) -> None:
        super().__init__(f"the change log no longer holds the entries after generation {after}")
        self.after = after


def fold(catalog: Catalog, changes: Iterable[Change]) -> Catalog:
    """``catalog`` with ``changes`` applied in order (a new dict)."""
    out = dict(catalog)
    for change in changes:
        if change.deleted:
            out.pop(change.task, None)
        else:
            out[change.task] = change
    return out


def latest_per_task(changes: Iterable[Change]) -> list[Change]:
    """The last change of each task, in generation order: what a replica needs to apply."""
    last: dict[str, Change] = {}
    for change in changes:
        last[change.task] = change
    return sorted(last.values(), key=lambda c: c.generation)


def dump_snapshot(generation: int, catalog: Catalog) -> bytes:
    tasks = {name: [c.generation, c.version, c.sha256] for name, c in sorted(catalog.items())}
    return json.dumps({"generation": generation, "tasks": tasks}, separators=(",", ":")).encode()


def load_snapshot(data: bytes) -> tuple[int, Catalog]:
    # A 100,000-task snapshot is ~9 MB, read at every start-up: orjson parses it ~5x faster
    # than json, and the cyclic GC is paused meanwhile: the ~400,000 lists and tuples made
    # here hold no cycles, yet their allocation set off collection after collection over
    # the growing heap (3x the time of the parse itself).
    enabled = gc.isenabled()
    gc.disable()
    try:
        raw = orjson.loads(data)
        catalog = {name: Change(gen, name, version, sha) for name, (gen, version, sha) in raw["tasks"].items()}
    finally:
        if enabled:
            gc.enable()
    return int(raw["generation"]), catalog


def log_key(generation: int) -> str:
    """The name of an entry; zero-padded so that names sort like generations."""
    return f"{generation:012d}.json"


def generation_of(key: str) -> int:
    return int(key.rsplit("/", 1)[-1].split(".", 1)[0])


_KEY = re.compile(r"\d{12}\.json")


def _ours(keys: Iterable[str]) -> list[str]:
    """Log keys only: an operator's stray file (notes.txt, a backup) is not an entry."""
    return [k for k in keys if _KEY.fullmatch(k.rsplit("/", 1)[-1])]


class LogObjects(Protocol):
    """The few object operations a change log needs (S3Objects and FolderObjects have them)."""

    def get(self, key: str) -> tuple[bytes, str] | None: ...
    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]: ...
    def create(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> bool: ...
    def delete(self, key: str) -> None: ...


class ChangeLog:
    def __init__(self, objects: LogObjects, compact_every: int = COMPACT_EVERY) -> None:
        self.objects, self.compact_every = objects, compact_every
        self._head = 0  # the highest generation known to exist; a hint, re-checked by listing

    def _entry_keys(self, after: int) -> list[str]:
        return _ours(self.objects.list("log/", start_after=f"log/{log_key(after)}"))

    def head(self) -> int:
        """The newest generation (0 for an empty log)."""
        if self._head == 0:  # start listing at the newest snapshot: older entries may be gone
            self._head = max(self._snapshot_generations(), default=0)
        keys = self._entry_keys(self._head)
        if keys:
            self._head = generation_of(keys[-1])
        return self._head

    def changes(self, after: int) -> list[Change]:
        """Every entry after generation ``after``, in order (cost: one list + one read per entry)."""
        keys = self._entry_keys(after)
        if keys and generation_of(keys[0]) != after + 1:
            raise LogTruncated(after)
        entries = [self.objects.get(key) for key in keys]
        if any(found is None for found in entries):  # compacted away while we read
            raise LogTruncated(after)
        try:
            return [Change.from_json(found[0]) for found in entries]
        except (ValueError, KeyError, TypeError) as exc:
            # A damaged entry: which task changed is lost, so a replica must reload the
            # catalog (LogTruncated) from whatever the backend trusts more than the log.
            log.error("change log entry after generation %d is damaged (%s)", after, exc)
            raise LogTruncated(after) from None

    def catalog(self) -> tuple[int, Catalog]:
        """The newest snapshot folded with the entries after it: every task's current version."""
        generations = self._snapshot_generations()
        generation, catalog = 0, {}
        try:
            if generations:
                generation, catalog = load_snapshot(self.objects.get(f"snapshots/{log_key(generations[-1])}")[0])
            tail = self.changes(generation)
        except (LogTruncated, ValueError, KeyError, TypeError) as exc:
            raise DamagedLog(f"the change log cannot be read back: {exc}") from None
        return (tail[-1].generation if tail else generation), fold(catalog, tail)

    def append(self, task: str, version: int | None, sha256: str | None) -> int:
        """Add one entry with the next free generation; returns it."""
        generation = self.head() + 1
        while not self.objects.create(f"log/{log_key(generation)}", Change(generation, task, version, sha256).to_json()):
            generation += 1  # another writer took it: its entry stays, ours goes after it
        self._head = generation
        if generation % self.compact_every == 0:
            self.compact(generation)
        return generation

    def write_snapshot(self, generation: int, catalog: Catalog) -> None:
        self.objects.create(f"snapshots/{log_key(generation)}", dump_snapshot(generation, catalog))

    def _snapshot_generations(self) -> list[int]:
        return [generation_of(k) for k in _ours(self.objects.list("snapshots/"))]

    def compact(self, generation: int) -> None:
        """Snapshot the catalog at ``generation``; drop entries and snapshots older than the previous one."""
        previous = [g for g in self._snapshot_generations() if g < generation]
        base, catalog = 0, {}
        if previous:
            base, catalog = load_snapshot(self.objects.get(f"snapshots/{log_key(previous[-1])}")[0])
        tail = [c for c in self.changes(base) if c.generation <= generation]
        self.write_snapshot(generation, fold(catalog, tail))
        # Keep one interval of entries, so replicas a little behind can still tail.
        for key in self.objects.list("log/"):
            if generation_of(key) > base:
                break
            self.objects.delete(key)
        for old in previous[:-1]:
            self.objects.delete(f"snapshots/{log_key(old)}")
        log.info("change log compacted at generation %d", generation)
