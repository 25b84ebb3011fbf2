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
