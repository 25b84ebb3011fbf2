"""Rolling snapshots: the catalog kept in parts, of which a round rewrites only a few.

A whole-catalog snapshot costs O(catalog) a round: at 1,000,000 tasks a ~90 MB parse, sort
and write every 1,000 changes, which made uploads beside it wait over a second. A snapshot
at a round generation G is instead a small manifest, ``snapshots/<G>.json``::

    {"generation": G, "format": 2, "next": 8,
     "parts": {"00": [g, "snapshots/parts/00-<g>.json"], ..., "ff": [g, null]},
     "layers": [[from, to, "snapshots/layers/changes-<from>-<to>.json"], ...]}

- a **part** holds every task whose name hashes to it (``part_of``: the first two hex
  digits of the sha256 of the name; 256 parts) as of generation ``g`` (null: it holds none);
- a **layer** holds the last change of each task changed in ``(from, to]`` (a deletion as
  ``[generation, null, null]``); a change in a layer counts for a task whose part is older.

Parts and layers are written in the whole-catalog layout (snapshots.py): plain JSON that
``jq`` reads. A round at G writes the layer of the changes since the previous round
(O(changes)) and rewrites the next ``PARTS_PER_ROUND`` parts in order, each folded with the
changes pending for it (a part nothing changed in keeps its object, its generation moves):
every part is rewritten once every ``PARTS // PARTS_PER_ROUND`` rounds, so a layer is kept
at most that long and no round rewrites more than that share of the catalog. The first
round of a store whose snapshot is whole (an older store, or none) writes every part once.

Every object is immutable and the manifest is created last, in one exclusive create, so a
reader always finds a whole catalog; the objects the previous manifest names are kept for
readers that read it a moment ago (changelog.py deletes the rest).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson

from bias_store.snapshots import dump_snapshot, load_snapshot, paused_gc

PARTS = 256
PART_IDS = [f"{i:02x}" for i in range(PARTS)]
PARTS_PER_ROUND = 4  # every part rewritten once in 64 rounds (64,000 changes at the default interval)
READERS = 8  # parts read at once (an S3 store: one GET each)
_ROUND = re.compile(r"-(\d{12})\.json$")  # the round a part or layer object was written in


def part_of(name: str) -> str:
    """The part a task's name falls in: ``printf %s NAME | sha256sum | cut -c1-2``."""
    return hashlib.sha256(name.encode()).hexdigest()[:2]


def part_key(part: str, generation: int) -> str:
    return f"snapshots/parts/{part}-{generation:012d}.json"


def layer_key(after: int, generation: int) -> str:
    return f"snapshots/layers/changes-{after:012d}-{generation:012d}.json"


def is_manifest(data: bytes) -> bool:
    return data.startswith(b'{"generation":') and b'"format":2' in data[:64]


@dataclass
class Rolling:
    """A manifest, plus (in the writer's memory) the changes its parts do not hold yet."""

    generation: int
    parts: dict[str, tuple[int, str | None]]  # part -> (its generation, its object or None: empty)
    layers: list[tuple[int, int, str]]  # (after, up to, object), oldest first
    next: int = 0  # the part the next round rewrites first
    pending: dict[str, dict] = field(default_factory=dict)  # part -> {task: Change} newer than the part

    def dumps(self) -> bytes:
        return orjson.dumps({"generation": self.generation, "format": 2, "next": self.next,
                             "parts": {p: list(v) for p, v in self.parts.items()}, "layers": [list(x) for x in self.layers]})

    @classmethod
    def loads(cls, data: bytes) -> Rolling:
        raw = orjson.loads(data)
        parts = {p: (int(g), key) for p, (g, key) in raw["parts"].items()}
        if sorted(parts) != PART_IDS:
            raise ValueError("a snapshot manifest names other parts than the 256 it must")
        return cls(int(raw["generation"]), parts, [(int(a), int(b), key) for a, b, key in raw["layers"]], int(raw["next"]))

    def counts(self, change) -> bool:
        """Whether a layer's change is newer than its task's part (the part does not hold it)."""
        return change.generation > self.parts[part_of(change.task)][0]


def _get(objects, key: str) -> bytes:
    found = objects.get(key)
    if found is None:
        raise KeyError(f"{key} is gone")  # compacted away under a slow reader: it reads the newest manifest again
    return found[0]


def read(objects, manifest: Rolling) -> dict:
    """The catalog the manifest describes: its parts, then its layers' changes."""
    keys = [key for _, key in manifest.parts.values() if key is not None]
    catalog: dict = {}
    with ThreadPoolExecutor(READERS) as pool, paused_gc():  # reads wait on I/O (an S3 GET each), parsed here in turn
        for data in pool.map(lambda k: _get(objects, k), keys):
            load_snapshot(data, into=catalog)
    for change in layered(objects, manifest):
        if change.deleted:
            catalog.pop(change.task, None)
        else:
            catalog[change.task] = change
    return catalog


def with_pending(objects, manifest: Rolling) -> Rolling:
    """The manifest with its pending changes read back from its layers (a writer that did not
    write it: another process, or this one before a restart). Parts are not read."""
    for change in layered(objects, manifest):
        manifest.pending.setdefault(part_of(change.task), {})[change.task] = change
    return manifest


def layered(objects, manifest: Rolling) -> list:
    """The layers' changes that their tasks' parts do not hold, oldest first."""
    out = []
    for _, _, key in manifest.layers:  # oldest first: a later layer's change of a task wins
        out += [c for c in load_snapshot(_get(objects, key))[1].values() if manifest.counts(c)]
    return out


def first(objects, generation: int, catalog: dict) -> Rolling:
    """Every part written from a whole catalog at ``generation`` (an older store's first round)."""
    split: dict[str, dict] = {}
    for name, change in catalog.items():
        split.setdefault(part_of(name), {})[name] = change
    parts: dict[str, tuple[int, str | None]] = {}
    for part in PART_IDS:
        key = part_key(part, generation) if part in split else None
        if key is not None:
            objects.create(key, dump_snapshot(generation, split[part]))
        parts[part] = (generation, key)
    return Rolling(generation, parts, [])


def advance(objects, state: Rolling, generation: int, changes: Iterable) -> Rolling:
    """The next round: ``changes`` (the last change of each task since ``state``, in order)
    as one layer, and the next ``PARTS_PER_ROUND`` parts folded with their pending changes."""
    from bias_store.changelog import fold

    changes = list(changes)
    layers = list(state.layers)
    if changes:
        key = layer_key(state.generation, generation)
        objects.create(key, dump_snapshot(generation, {c.task: c for c in changes}))
        layers.append((state.generation, generation, key))
    pending = {p: dict(v) for p, v in state.pending.items()}
    for change in changes:
        pending.setdefault(part_of(change.task), {})[change.task] = change
    parts = dict(state.parts)
    for i in range(PARTS_PER_ROUND):
        part = PART_IDS[(state.next + i) % PARTS]
        changed = pending.pop(part, None)
        g, key = parts[part]
        if changed:  # folded and written; a part nothing changed in keeps its object
            held = load_snapshot(_get(objects, key))[1] if key is not None else {}
            folded = fold(held, sorted(changed.values(), key=lambda c: c.generation))
            key = part_key(part, generation) if folded else None
            if key is not None:
                objects.create(key, dump_snapshot(generation, folded))
        parts[part] = (generation, key)
    oldest = min(g for g, _ in parts.values())
    layers = [layer for layer in layers if layer[1] > oldest]  # a layer every part is newer than is done
    return Rolling(generation, parts, layers, (state.next + PARTS_PER_ROUND) % PARTS, pending)


def referenced(manifest: Rolling) -> set[str]:
    return {key for _, key in manifest.parts.values() if key is not None} | {key for _, _, key in manifest.layers}


def drop_unreferenced(objects, keep: set[str], base: int) -> None:
    """Delete the parts and layers of rounds up to ``base`` that ``keep`` does not name (a newer
    one may be another writer's round in progress: it stays)."""
    for prefix in ("snapshots/parts/", "snapshots/layers/"):
        for key in list(objects.list(prefix)):
            found = _ROUND.search(key)
            if key not in keep and found is not None and int(found.group(1)) <= base:
                objects.delete(key)
