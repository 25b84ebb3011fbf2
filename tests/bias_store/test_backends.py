"""One suite, two backends: the filesystem store and the S3 store on a real SeaweedFS.

Same semantics for both: versions, rollback, keep-N, a change log with one entry per
mutation, compaction, immutable version objects, and concurrent writers (two store
objects, as two replicas would hold) that never lose each other's changes.
"""

from __future__ import annotations

import hashlib
import threading
import uuid

import pytest

from bias_store import LogTruncated, TaskNotFound, VersionNotFound, dumps, validate_upload
from tests.helpers import random_bias_set


@pytest.fixture(params=["filesystem", "s3"])
def make_store(request, tmp_path):
    """A factory of store objects that all see one fresh store (a folder, or an S3 prefix)."""
    if request.param == "filesystem":
        from bias_store.backends.folder import FilesystemStore

        return lambda **kw: FilesystemStore(tmp_path / "store", **kw)
    from bias_store.backends.s3 import S3Store
    from bias_store.backends.s3.objects import S3Objects
    from tests.seaweedfs import BUCKET

    server, prefix = request.getfixturevalue("seaweedfs"), f"t-{uuid.uuid4().hex[:8]}"
    return lambda **kw: S3Store(S3Objects(server.client(), BUCKET, prefix), **kw)


@pytest.fixture()
def upload(tiny_backbone):
    def make(name: str, seed: int = 0):
        return validate_upload(dumps(random_bias_set(tiny_backbone.spec, name, seed=seed)), tiny_backbone.spec)

    return make


def test_versions_rollback_keep_n_and_delete(make_store, upload):
    store = make_store(keep_versions=3)
    uploads = [upload("t", seed=i) for i in range(5)]
    records = [store.put(u) for u in uploads]
    assert [r.version for r in records] == [1, 2, 3, 4, 5]
    record, data = store.get("t")
    assert record.version == 5 and data == uploads[4].data and record.versions == (3, 4, 5)
    with pytest.raises(VersionNotFound, match=r"available versions: \[3, 4, 5\]"):
        store.get("t", 1)
    assert store.read("t", 4) == uploads[3].data

    assert store.rollback("t", 3).version == 3
    assert store.get("t")[1] == uploads[2].data
    assert store.put(upload("t", seed=9)).version == 6  # versions never go backwards
    u = upload("u")
    store.put(u)
    assert [r.name for r in store.list()] == ["t", "u"]
    store.delete("t")
    with pytest.raises(TaskNotFound):
        store.get("t")
    assert store.state() == {"u": hashlib.sha256(u.data).hexdigest()}


def test_every_mutation_logs_one_entry_and_the_catalog_follows(make_store, upload):
    store = make_store()
    a1, b1, a2 = store.put(upload("a", 1)), store.put(upload("b", 1)), store.put(upload("a", 2))
    rolled = store.rollback("a", 1)
    deleted_at = store.delete("b")
    changes = store.changes(0)
    made = [a1.generation, b1.generation, a2.generation, rolled.generation, deleted_at]
    assert [c.generation for c in changes] == [1, 2, 3, 4, 5] == made
    assert [(c.task, c.version, c.sha256) for c in changes] == [
        ("a", 1, a1.sha256), ("b", 1, b1.sha256), ("a", 2, a2.sha256), ("a", 1, a1.sha256), ("b", None, None),
    ]
    assert [c.generation for c in store.changes(3)] == [4, 5] and store.changes(5) == []
    generation, catalog = make_store().catalog()  # another replica starting now
    assert generation == 5 == store.generation()
    assert {n: (c.version, c.sha256) for n, c in catalog.items()} == {"a": (1, a1.sha256)}


def test_compaction_snapshots_and_drops_old_entries(make_store, upload):
    store = make_store(compact_every=4)
    for i in range(9):  # snapshots at generations 4 and 8; entries <= 4 are gone after the second
        store.put(upload(f"t{i % 3}", seed=i))
    assert store.log.wait_compacted(timeout=30)  # snapshots are written aside, by a background thread
    generation, catalog = make_store(compact_every=4).catalog()
    assert generation == 9 and sorted(catalog) == ["t0", "t1", "t2"]
    assert {n: c.sha256 for n, c in catalog.items()} == store.state()
    with pytest.raises(LogTruncated):
        store.changes(2)  # a replica this far behind reloads the catalog instead
    assert [c.generation for c in store.changes(4)] == [5, 6, 7, 8, 9]


def test_version_objects_are_never_overwritten(make_store, upload):
    store = make_store()
    first = store.put(upload("t", 1))
    store.delete("t")
    second = upload("t", 2)
    again = store.put(second)  # a deleted task's re-upload gets a fresh version
    assert store.read("t", again.version) == second.data
    if hasattr(store, "objects") and hasattr(store.objects, "client"):  # S3: the conditional writes themselves
        key = f"tasks/t/v{again.version:06d}.safetensors"
        assert again.version == first.version + 1
        assert store.objects.create(key, b"other bytes") is False
        body, etag = store.objects.get("tasks/t/CURRENT")
        changed = body.replace(b"}", b', "note": 1}')
        assert store.objects.replace("tasks/t/CURRENT", changed, etag) is True
        assert store.objects.replace("tasks/t/CURRENT", body, etag) is False  # stale ETag: refused
        assert store.objects.replace("tasks/t/CURRENT", body, None) is False  # exists: If-None-Match refuses
        assert store.read("t", again.version) == second.data


def test_the_metadata_cache_is_bounded_and_freed_on_delete(make_store, upload):
    """One bounded LRU for both backends (the S3 one was an unbounded dict: issue 22, bug 6)."""
    store = make_store(keep_versions=2, meta_cache_size=4)
    for seed in range(10):
        store.put(upload(f"t{seed % 3}", seed=seed))
    store.list()
    assert len(store.meta) <= 4
    store.delete("t0")
    assert all(name != "t0" for name, _ in store.meta._entries)


def test_read_returns_the_bytes_without_parsing_or_hashing(make_store, upload, monkeypatch):
    """A replica applying a log entry checks the sha256 once itself (issue 19): ``read`` neither
    builds a record (a header parse) nor hashes."""
    import bias_store.backends.base as base

    stored = upload("t", 1)
    make_store().put(stored)
    calls = []
    monkeypatch.setattr(base, "read_header", lambda data: calls.append("header"))
    monkeypatch.setattr(base, "sha256", lambda data=b"": calls.append("sha256"))
    assert make_store().read("t", 1) == stored.data  # a fresh store: nothing cached
    assert calls == []


def put_concurrently(stores: list, uploads: dict) -> dict:
    """Writer ``w`` puts its uploads ``(w, 0), (w, 1), ...`` in order through ``stores[w % len]``,
    all writers at once; returns ``(w, i) -> record``, and fails on any writer's error."""
    writers = sorted({w for w, _ in uploads})
    records, errors = {}, []

    def writer(w: int) -> None:
        try:
            for key in sorted(k for k in uploads if k[0] == w):
                records[key] = stores[w % len(stores)].put(uploads[key])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    return records


def test_concurrent_writers_lose_nothing(make_store, upload):
    """Two replicas' stores, 3 threads each, all writing the same task and their own ones."""
    stores = [make_store(), make_store()]
    uploads = {(w, i): upload("shared" if i % 2 else f"own{w}", seed=10 * w + i) for w in range(6) for i in range(4)}
    records = put_concurrently(stores, uploads)
    changes = stores[0].changes(0)
    assert [c.generation for c in changes] == list(range(1, 25))  # one entry each, no gaps
    logged = {(c.task, c.version, c.sha256) for c in changes}
    assert logged == {(r.name, r.version, r.sha256) for r in records.values()}
    shared = sorted(r.version for r in records.values() if r.name == "shared")
    assert shared == list(range(1, 13))  # every writer got its own version number
    last = [c for c in changes if c.task == "shared"][-1]
    assert stores[1].get("shared")[0].sha256 == last.sha256  # the current pointer agrees with the log


def test_concurrent_writers_with_keep_one_never_share_a_number(make_store, upload):
    """Keep-N pruning removes version objects while other writers are mid-put: a number once
    handed out is never handed out again, and the pointer ends on the log's last change."""
    stores = [make_store(keep_versions=1) for _ in range(2)]
    uploads = {(w, i): upload("hot", seed=100 * w + i) for w in range(4) for i in range(5)}
    records = put_concurrently(stores, uploads)
    assert sorted(r.version for r in records.values()) == list(range(1, 21))
    last = stores[0].changes(0)[-1]
    current, data = stores[1].get("hot")
    assert (current.version, current.sha256) == (last.version, last.sha256)
    assert hashlib.sha256(data).hexdigest() == last.sha256
