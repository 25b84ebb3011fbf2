"""Keep-N pruning never removes a version a put still under way needs (S3, a real SeaweedFS): more writers of one
task at once than BITFIT_KEEP_VERSIONS, the slowest of them logging last."""

from __future__ import annotations

import hashlib
import threading
import uuid

import pytest

from bias_store import ValidatedUpload
from bias_store.backends.s3 import S3Store
from bias_store.backends.s3.objects import S3Objects
from bias_store.format import dumps
from tests.bias_store.test_backends import put_concurrently
from tests.helpers import random_bias_set
from tests.seaweedfs import BUCKET, CREDENTIALS


@pytest.fixture
def make_store(seaweedfs, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    prefix = f"prune-{uuid.uuid4().hex[:8]}"
    return lambda **kw: S3Store(S3Objects(seaweedfs.client(), BUCKET, prefix), **kw)


def _upload(spec, seed: int) -> ValidatedUpload:
    bias_set = random_bias_set(spec, "hot", seed=seed)
    return ValidatedUpload(bias_set, dumps(bias_set))


def test_a_put_that_logs_last_keeps_its_version_object(make_store, tiny_backbone):
    slow, fast = make_store(keep_versions=2), make_store(keep_versions=2)
    created, go = threading.Event(), threading.Event()
    append = slow.log.append

    def held_append(*args):  # the slow writer's object exists; its log entry waits
        created.set()
        assert go.wait(30)
        return append(*args)

    slow.log.append = held_append
    records = []
    writer = threading.Thread(target=lambda: records.append(slow.put(_upload(tiny_backbone.spec, 1))))
    writer.start()
    assert created.wait(30)
    for seed in range(2, 7):  # five faster puts, keep 2: before the guard they pruned the slow one's v1
        fast.put(_upload(tiny_backbone.spec, seed))
    go.set()
    writer.join(30)
    assert records and records[0].version == 1
    current, data = fast.get("hot")  # the slow put logged last: it is what every replica serves
    assert current.version == 1 and hashlib.sha256(data).hexdigest() == records[0].sha256
    assert fast.read("hot", 1) == data


def test_more_concurrent_writers_than_kept_versions_leave_every_logged_current_readable(make_store, tiny_backbone):
    stores = [make_store(keep_versions=2) for _ in range(3)]
    uploads = {(w, i): _upload(tiny_backbone.spec, 10 * w + i) for w in range(6) for i in range(3)}
    put_concurrently(stores, uploads)
    last = stores[0].changes(0)[-1]
    current, data = stores[1].get("hot")
    assert (current.version, current.sha256) == (last.version, last.sha256)
    assert hashlib.sha256(data).hexdigest() == last.sha256
    # A version still pending when the last concurrent put pruned is kept (never pruned from
    # under a settle); the next put prunes it: nothing pending is left behind for good.
    stores[2].put(_upload(tiny_backbone.spec, 99))
    assert len(stores[2]._versions("hot")) == 2
