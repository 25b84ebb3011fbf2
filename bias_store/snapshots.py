"""A snapshot of the catalog, as bytes: ``{"generation": G, "tasks": {name: [generation, version, sha256]}}``.

Names sorted, compact JSON (readable by plain tools). A million-task snapshot is ~90 MB:
parsed or written in one call it would hold the interpreter for seconds, so both go in
chunks of ``SNAPSHOT_CHUNK`` entries, and other threads (requests, the watcher) run between
them; the cyclic GC is paused meanwhile.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from bias_store.changelog import Catalog

SNAPSHOT_CHUNK = 20_000  # entries per orjson call when a snapshot is written
_CHUNK_BYTES = 2_000_000  # ~20,000 entries of a snapshot's text, per orjson call when parsed
_gc_pauses, _gc_lock = [0], threading.Lock()


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC off for the block, in any number of threads at once. The ~4 objects per
    entry made here hold no cycles, yet their allocation sets off collection after
    collection over the growing heap (3x the time of the parse itself)."""
    with _gc_lock:
        if _gc_pauses[0] == 0:
            _gc_pauses.append(gc.isenabled())
            gc.disable()
        _gc_pauses[0] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses[0] -= 1
            if _gc_pauses[0] == 0 and _gc_pauses.pop():
                gc.enable()


def dump_snapshot(generation: int, catalog: Catalog) -> bytes:
    """``{"generation": G, "tasks": {name: [generation, version, sha256], ...}}``, names sorted, compact."""
    names, parts = sorted(catalog), []
    with paused_gc():
        for i in range(0, len(names), SNAPSHOT_CHUNK):
            chunk = {n: [c.generation, c.version, c.sha256] for n in names[i:i + SNAPSHOT_CHUNK] for c in (catalog[n],)}
            parts.append(orjson.dumps(chunk)[1:-1])
    return b'{"generation":%d,"tasks":{%s}}' % (generation, b",".join(parts))


def load_snapshot(data: bytes, into: Catalog | None = None) -> tuple[int, Catalog]:
    """A snapshot's generation and catalog (its entries added to ``into`` when given: a rolling
    snapshot's parts go into one dict, not one dict each then copied)."""
    # A 1,000,000-task snapshot is ~90 MB: parsed in one call it holds the interpreter for
    # seconds. Our own compact layout is cut between entries ('],"' occurs nowhere else:
    # names and hashes are [a-z0-9_-]) and parsed piece by piece; any other layout whole.
    from bias_store.changelog import Change  # (changelog imports this module)

    with paused_gc():
        start = data.find(b'"tasks":{')
        if not (data.startswith(b'{"generation":') and start > 0 and data.endswith(b"}}")):
            raw = orjson.loads(data)
            catalog = {} if into is None else into
            catalog.update((name, Change(g, name, v, sha)) for name, (g, v, sha) in raw["tasks"].items())
            return int(raw["generation"]), catalog
        generation = int(orjson.loads(data[:start].rstrip(b",") + b"}")["generation"])
        body, catalog, pos = memoryview(data)[start + 9:-2], {} if into is None else into, 0
        while pos < len(body):
            end = data.find(b'],"', start + 9 + pos + _CHUNK_BYTES, len(data) - 2) - start - 9
            end = len(body) if end < 0 else end + 1
            piece = orjson.loads(b"{" + bytes(body[pos:end]) + b"}")
            catalog.update((name, Change(g, name, v, sha)) for name, (g, v, sha) in piece.items())
            pos = end + 1
    return generation, catalog
