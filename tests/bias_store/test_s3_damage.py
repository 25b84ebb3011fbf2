"""The S3 store under damage, on a real SeaweedFS (issue 22): one bad object is one task's
problem or one skipped entry, never a stopped store; an S3 call's wait is bounded."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from bias_store import StoreUnavailable, dumps, open_store, validate_upload
from bias_store.backends.s3 import S3Store
from bias_store.backends.s3.objects import S3Objects
from bias_store.errors import CorruptTask
from tests.helpers import random_bias_set
from tests.seaweedfs import BUCKET, CREDENTIALS


@pytest.fixture()
def stores(seaweedfs):
    prefix = f"d-{uuid.uuid4().hex[:8]}"
    return lambda: S3Store(S3Objects(seaweedfs.client(), BUCKET, prefix))


@pytest.fixture()
def upload(tiny_backbone):
    return lambda name, seed=0: validate_upload(dumps(random_bias_set(tiny_backbone.spec, name, seed=seed)), tiny_backbone.spec)


def test_a_damaged_log_entry_is_skipped_and_reported_and_later_changes_apply(stores, upload):
    writer, other = stores(), stores()
    writer.put(upload("a", 1))
    assert writer.objects.create("log/000000000002.json", b"\xff\xfe{not json")
    b = other.put(upload("b", 2))  # another replica's upload goes after it, no LogTruncated
    assert b.generation == 3
    replica = stores()
    assert [(c.generation, c.task) for c in replica.changes(0)] == [(1, "a"), (3, "b")]
    assert list(replica.log.damaged) == [2]
    generation, catalog = replica.catalog()  # a replica starting now
    assert generation == 3 and sorted(catalog) == ["a", "b"]
    assert [c.task for c in replica.changes(1)] == ["b"]


def test_a_garbage_pointer_is_that_tasks_corrupt_task_and_a_put_repairs_it(stores, upload):
    store = stores()
    store.put(upload("bad", 1))
    store.put(upload("good", 2))
    _, etag = store.objects.get("tasks/bad/CURRENT")
    assert store.objects.replace("tasks/bad/CURRENT", b"[1,2,3]", etag)
    with pytest.raises(CorruptTask, match="pointer is damaged"):
        store.get("bad")
    assert [r.name for r in store.list()] == ["good"] and list(store.problems()) == ["bad"]
    repaired = store.put(upload("bad", 3))
    assert repaired.version == 2  # past every kept version
    assert store.get("bad")[0].sha256 == repaired.sha256 and store.list()[0].name == "bad"


def test_a_far_future_log_entry_is_not_trusted(stores, upload):
    store = stores()
    store.put(upload("a", 1))
    forged = b'{"generation": 999999999, "task": "a", "version": 1, "sha256": null}'
    assert store.objects.create("log/000999999999.json", forged)
    replica = stores()
    assert replica.generation() == 1 and replica.changes(1) == []
    b = store.put(upload("b", 2))
    assert b.generation == 2 and replica.generation() == 2
    assert [c.task for c in replica.changes(0)] == ["a", "b"]
    assert sorted(replica.catalog()[1]) == ["a", "b"]


def test_a_frozen_endpoint_answers_store_unavailable_within_the_timeouts(monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    with socket.socket() as frozen:  # accepts connections (the backlog) and never answers
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(16)
        endpoint = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        store = open_store(f"s3://{BUCKET}/frozen", s3_endpoint_url=endpoint,
                           s3_connect_timeout_s=0.5, s3_read_timeout_s=0.5, s3_max_attempts=2)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.generation()
        assert time.monotonic() - started < 5


class CountingObjects(S3Objects):
    """The real objects class, counting the GETs of version files."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.version_gets = 0

    def get(self, key: str):
        self.version_gets += key.endswith(".safetensors")
        return super().get(key)


def test_the_disk_tier_serves_a_second_read_without_a_get_and_refetches_a_tampered_file(seaweedfs, upload, tmp_path):
    from bias_store.backends.s3.cache import DiskCache

    prefix = f"c-{uuid.uuid4().hex[:8]}"
    S3Store(S3Objects(seaweedfs.client(), BUCKET, prefix)).put(stored := upload("t", 1))
    objects = CountingObjects(seaweedfs.client(), BUCKET, prefix)
    store = S3Store(objects, cache=DiskCache(tmp_path / "cache", max_bytes=10 * len(stored.data)))
    assert store.read("t", 1) == stored.data and objects.version_gets == 1
    assert store.read("t", 1) == stored.data and store.get("t")[1] == stored.data
    assert objects.version_gets == 1  # both served from the local file
    (cached,) = (tmp_path / "cache" / "t").iterdir()
    cached.write_bytes(b"\x00" * len(stored.data))  # damaged (or tampered) on disk
    assert store.read("t", 1) == stored.data and objects.version_gets == 2  # fetched again, never served
    assert store.read("t", 1) == stored.data and objects.version_gets == 2


def test_the_disk_tier_is_bounded_by_bytes_least_recently_used_first(tmp_path):
    from bias_store.backends.s3.cache import DiskCache

    cache = DiskCache(tmp_path / "cache", max_bytes=250)
    for i in range(3):
        cache.put(f"t{i}", 1, bytes([i]) * 100)
        time.sleep(0.01)  # distinct use times
    assert cache.get("t0", 1) is None and cache.get("t2", 1) == b"\x02" * 100
    assert sum(p.stat().st_size for p in (tmp_path / "cache").glob("*/*")) <= 250
