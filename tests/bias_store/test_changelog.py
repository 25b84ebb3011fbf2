"""The change log's snapshots: written aside (no mutation waits for one), parsed in chunks."""

from __future__ import annotations

import hashlib
import json
import threading
import time

from bias_store import FilesystemStore, dumps, validate_upload
from bias_store import snapshots as changelog_module
from bias_store.changelog import Change, ChangeLog, dump_snapshot, load_snapshot
from tests.helpers import random_bias_set


def _catalog(n: int) -> dict:
    return {f"t{i:05d}": Change(i, f"t{i:05d}", i % 7 + 1, hashlib.sha256(b"%d" % i).hexdigest()) for i in range(n)}


def test_a_snapshot_round_trips_in_chunks_and_other_layouts_still_parse(monkeypatch):
    monkeypatch.setattr(changelog_module, "_CHUNK_BYTES", 300)  # a few entries a piece
    monkeypatch.setattr(changelog_module, "SNAPSHOT_CHUNK", 7)
    catalog = _catalog(1000)
    data = dump_snapshot(42, catalog)
    assert json.loads(data) == {"generation": 42, "tasks": {n: [c.generation, c.version, c.sha256] for n, c in catalog.items()}}
    assert load_snapshot(data) == (42, catalog)
    assert load_snapshot(dump_snapshot(0, {})) == (0, {})
    spaced = json.dumps({"generation": 3, "tasks": {n: list(c[:1] + c[2:]) for n, c in catalog.items()}}, indent=1).encode()
    assert load_snapshot(spaced) == (3, catalog)  # an older or hand-made layout: parsed whole


def test_a_put_that_crosses_a_round_generation_never_waits_for_the_snapshot(tmp_path, tiny_backbone, monkeypatch):
    """The snapshot is written by a background thread, outside the store lock: the put that
    crossed the round and the next mutations return at once, and readers see every change."""
    release, started = threading.Event(), threading.Event()
    real = ChangeLog.compact

    def slow(self, generation):
        started.set()
        release.wait(30)
        real(self, generation)

    monkeypatch.setattr(ChangeLog, "compact", slow)
    store = FilesystemStore(tmp_path / "s", compact_every=2)

    def put(name: str, seed: int):
        return store.put(validate_upload(dumps(random_bias_set(tiny_backbone.spec, name, seed=seed)), tiny_backbone.spec))

    put("a", 1)
    t = time.perf_counter()
    put("b", 2)  # generation 2: a round
    assert started.wait(5) and time.perf_counter() - t < 5
    put("c", 3)  # takes the store lock while the snapshot is still being written
    store.delete("a")
    assert sorted(FilesystemStore(tmp_path / "s").catalog()[1]) == ["b", "c"]
    assert not (tmp_path / "s" / "snapshots" / "000000000002.json").exists()
    release.set()
    assert store.log.wait_compacted(timeout=30)
    assert json.loads((tmp_path / "s" / "snapshots" / "000000000004.json").read_bytes())["generation"] == 4  # and the round after it
    assert sorted(FilesystemStore(tmp_path / "s").catalog()[1]) == ["b", "c"]
