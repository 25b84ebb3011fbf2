"""The catalog's change log, shared by every backend.

Each mutation appends one ``Change`` with the next generation number. A replica keeps the
generation it has applied and reads only the entries after it, so keeping up costs per
change, not per task in the catalog. Every ``COMPACT_EVERY`` generations the writer that
appended the round number also has a snapshot written (the previous snapshot folded with
the entries since), so start-up reads one snapshot plus a short tail; entries older than
the previous snapshot are then deleted.

The snapshot is written **aside**: the append hands the round generation to a background
thread and returns, so no mutation holds the store's lock, or waits, while it is written.
It is a rolling one (rolling.py): a small manifest naming the catalog's 256 parts and the
layers of recent changes; a round writes the layer of its own changes and rewrites a few
parts, so its cost is O(changes since the last round), not O(catalog) (a whole 1M-task
snapshot made uploads beside it wait over a second). Every object is immutable and the manifest is created last, in one exclusive
create, so a reader always finds a whole catalog plus its tail. A process that dies before
its snapshot is written only makes the next one fold a longer tail. An older store's whole
snapshot (one JSON object) still reads, and its first round is taken over into parts.

``ChangeLog`` keeps the entries as objects of any ``LogObjects`` (an S3 prefix, a folder):
an entry is created only if its key is free, so two writers can never both take one
generation; the loser takes the next one and nothing is overwritten.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from bias_store import rolling
from bias_store.errors import BiasStoreError
from bias_store.snapshots import dump_snapshot, load_snapshot  # noqa: F401 (dump_snapshot: used by tools and tests)

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
    """``skip_damaged``: an entry that cannot be parsed is skipped and reported (``damaged``)
    and the later ones still apply (S3: nothing else records the order of changes); else a
    replica reloads the catalog (LogTruncated), which the folder store rebuilds from CURRENT.
    Entries are only trusted in one unbroken run of generations: writers take the next
    free one, so an entry after a gap (``000999999999.json`` put by hand) is ignored."""

    def __init__(self, objects: LogObjects, compact_every: int = COMPACT_EVERY, skip_damaged: bool = False) -> None:
        self.objects, self.compact_every, self.skip_damaged = objects, compact_every, skip_damaged
        self.damaged: dict[int, str] = {}  # generation -> why its entry was skipped
        self._head = 0  # the highest generation known to exist; a hint, re-checked by listing
        self._round = threading.Condition()
        self._wanted = 0  # the newest round generation handed to the compactor, not yet done
        self._compacting = False  # a compactor thread is running
        self._rolling: rolling.Rolling | None = None  # the last manifest written here, with its pending changes

    def _entry_keys(self, after: int) -> list[str]:
        """The keys of the unbroken run of entries right after ``after`` (a later gap ends it)."""
        keys = _ours(self.objects.list("log/", start_after=f"log/{log_key(after)}"))
        for i in range(1, len(keys)):
            if generation_of(keys[i]) != generation_of(keys[i - 1]) + 1:
                log.warning("change log: entry %s follows a gap after %s: not trusted", keys[i], keys[i - 1])
                return keys[:i]
        return keys

    def head(self) -> int:
        """The newest generation (0 for an empty log)."""
        if self._head == 0:  # start listing at the newest snapshot: older entries may be gone
            self._head = max(self._snapshot_generations(), default=0)
        keys = self._entry_keys(self._head)
        if keys and generation_of(keys[0]) != self._head + 1:
            # Compacted past our hint (start at the newest snapshot), or an untrusted entry.
            self._head = max([self._head, *self._snapshot_generations()])
            keys = self._entry_keys(self._head)
            if keys and generation_of(keys[0]) != self._head + 1:
                return self._head
        if keys:
            self._head = generation_of(keys[-1])
        return self._head

    def changes(self, after: int) -> list[Change]:
        """Every entry after generation ``after``, in order (cost: one list + one read per entry)."""
        keys = self._entry_keys(after)
        if keys and generation_of(keys[0]) != after + 1:
            if after >= max(self._snapshot_generations(), default=0):
                log.warning("change log: entry %s follows a gap after %d: not trusted", keys[0], after)
                return []  # nothing after ``after`` was compacted: the entry is not ours
            raise LogTruncated(after)
        entries = [self.objects.get(key) for key in keys]
        if any(found is None for found in entries):  # compacted away while we read
            raise LogTruncated(after)
        changes = []
        for key, found in zip(keys, entries):
            try:
                changes.append(Change.from_json(found[0]))
            except (ValueError, KeyError, TypeError) as exc:
                generation = generation_of(key)
                if not self.skip_damaged:
                    # Which task changed is lost: a replica reloads the catalog (LogTruncated)
                    # from whatever the backend trusts more than the log.
                    log.error("change log entry %d is damaged (%s)", generation, exc)
                    raise LogTruncated(after) from None
                if generation not in self.damaged:
                    log.error("change log entry %d is damaged (%s): skipped", generation, exc)
                self.damaged[generation] = f"entry {generation} is damaged: {exc}"
        return changes

    def catalog(self) -> tuple[int, Catalog]:
        """The newest snapshot folded with the entries after it: every task's current version."""
        for attempt in range(3):
            generations = self._snapshot_generations()
            generation, catalog = 0, {}
            try:
                if generations:
                    generation, catalog = self._read_snapshot(generations[-1])
                tail = self.changes(generation)
            except (KeyError, LogTruncated) as exc:  # compacted meanwhile (a part, the tail): the newest snapshot again
                if attempt < 2:
                    continue
                raise DamagedLog(f"the change log cannot be read back: {exc}") from None
            except (ValueError, TypeError) as exc:
                raise DamagedLog(f"the change log cannot be read back: {exc}") from None
            return (tail[-1].generation if tail else generation), fold(catalog, tail)
        raise AssertionError("unreachable")

    def _read_snapshot(self, generation: int, pending: bool = False) -> tuple[int, Catalog | rolling.Rolling]:
        """A snapshot's generation and catalog (a whole one, or a rolling manifest's parts and
        layers); ``pending``: a manifest comes back as itself, with its pending changes, unread."""
        found = self.objects.get(f"snapshots/{log_key(generation)}")
        if found is None:
            raise KeyError(f"snapshot {generation} is gone")
        if not rolling.is_manifest(found[0]):
            return load_snapshot(found[0])
        manifest = rolling.Rolling.loads(found[0])
        if pending:
            return manifest.generation, rolling.with_pending(self.objects, manifest)
        return manifest.generation, rolling.read(self.objects, manifest)

    def append(self, task: str, version: int | None, sha256: str | None) -> int:
        """Add one entry with the next free generation; returns it."""
        generation = self.head() + 1
        while not self.objects.create(f"log/{log_key(generation)}", Change(generation, task, version, sha256).to_json()):
            generation += 1  # another writer took it: its entry stays, ours goes after it
        self._head = generation
        if generation % self.compact_every == 0:
            self._compact_aside(generation)
        return generation

    def _compact_aside(self, generation: int) -> None:
        """Have the snapshot at ``generation`` written by a background thread (one at a time;
        a round that comes while one is written is taken next, skipped if a newer one is)."""
        with self._round:
            self._wanted = max(self._wanted, generation)
            if self._compacting:
                return
            self._compacting = True
        threading.Thread(target=self._compactor, name="changelog-compactor", daemon=True).start()

    def _compactor(self) -> None:
        while True:
            with self._round:
                generation, self._wanted = self._wanted, 0
                if not generation:
                    self._compacting = False
                    self._round.notify_all()
                    return
            try:
                self.compact(generation)
            except Exception:  # noqa: BLE001 - a snapshot is an optimisation: the next round folds more
                log.exception("change log: the snapshot at generation %d was not written", generation)

    def wait_compacted(self, timeout: float | None = None) -> bool:
        """Wait until no snapshot is being written (tests, benchmarks, a clean shutdown)."""
        with self._round:
            return self._round.wait_for(lambda: not self._compacting, timeout)

    def write_snapshot(self, generation: int, catalog: Catalog) -> None:
        self.objects.create(f"snapshots/{log_key(generation)}", dump_snapshot(generation, catalog))

    def _snapshot_generations(self) -> list[int]:
        return [generation_of(k) for k in _ours(self.objects.list("snapshots/"))]

    def compact(self, generation: int) -> None:
        """Snapshot the catalog at ``generation`` (a rolling manifest, rolling.py: O(changes)
        a round); drop entries, snapshots and parts older than the previous snapshot."""
        previous = [g for g in self._snapshot_generations() if g < generation]
        base, state = 0, None
        if previous:
            base = previous[-1]
            cached = self._rolling
            state = cached if cached is not None and cached.generation == base else self._read_snapshot(base, True)[1]
        tail = [c for c in self.changes(base) if c.generation <= generation]
        if isinstance(state, rolling.Rolling):
            manifest = rolling.advance(self.objects, state, generation, latest_per_task(tail))
        else:  # a whole snapshot (an older store) or none: every part written once
            manifest = rolling.first(self.objects, generation, fold(state or {}, tail))
        made = self.objects.create(f"snapshots/{log_key(generation)}", manifest.dumps())
        self._rolling = manifest if made else None  # another writer's snapshot of this round: read back when needed
        self._drop_older(generation, base, manifest, previous)
        log.info("change log compacted at generation %d", generation)

    def _drop_older(self, generation: int, base: int, manifest: rolling.Rolling, previous: list[int]) -> None:
        """Entries up to ``base`` (one interval is kept, so replicas a little behind can still
        tail), snapshots before it, and parts and layers neither it nor the new one names."""
        for key in self.objects.list("log/"):
            if generation_of(key) > base:
                break
            self.objects.delete(key)
        keep = rolling.referenced(manifest)
        if previous:
            found = self.objects.get(f"snapshots/{log_key(base)}")
            if found is not None and rolling.is_manifest(found[0]):
                keep |= rolling.referenced(rolling.Rolling.loads(found[0]))
        rolling.drop_unreferenced(self.objects, keep, base)
        for old in previous[:-1]:
            self.objects.delete(f"snapshots/{log_key(old)}")
