"""StoreSync: the engine follows the store's change log (other writers' puts and deletes), once per change."""

from __future__ import annotations

import logging

from bias_store import FilesystemStore, ValidatedUpload, dumps, validate_upload
from engine import Engine
from server.catalog.sync import StoreSync
from server.catalog.validation import UploadValidator
from server.process.metrics import Metrics
from tests.helpers import random_bias_set


def make(tmp_path, backbone):
    store = FilesystemStore(tmp_path / "s")
    sync = StoreSync(store, Engine(backbone), UploadValidator(backbone.spec, 1 << 20, Metrics()))
    return store, sync


def put(store, spec, name, seed):
    return store.put(validate_upload(dumps(random_bias_set(spec, name, seed=seed)), spec))


def test_another_writers_puts_and_deletes_reach_the_engine(tmp_path, tiny_backbone):
    spec = tiny_backbone.spec
    store, sync = make(tmp_path, tiny_backbone)
    put(store, spec, "a", 1)
    assert sync.reload() == 1 and set(sync.engine.tasks()) == {"a"}
    writer = FilesystemStore(tmp_path / "s")  # another process on the same folder
    b = put(writer, spec, "b", 2)
    a2 = put(writer, spec, "a", 3)
    assert sync.poll() == 2
    assert {n: h.sha256 for n, h in sync.engine.tasks().items()} == {"a": a2.sha256, "b": b.sha256}
    assert sync.poll() == 0  # nothing new: nothing re-read
    writer.delete("b")
    assert sync.poll() == 1 and set(sync.engine.tasks()) == {"a"}
    assert sync.wait_for(sync.generation, timeout=0.01)
    assert not sync.wait_for(sync.generation + 1, timeout=0.01)  # no watcher running: times out


def test_a_stored_file_this_backbone_rejects_is_skipped_and_reported_once(tmp_path, tiny_backbone, caplog):
    spec = tiny_backbone.spec
    store, sync = make(tmp_path, tiny_backbone)
    foreign = random_bias_set(spec, "foreign", seed=4)
    foreign.meta.backbone_fingerprint = "f" * 64  # trained for another backbone
    store.put(ValidatedUpload(foreign, dumps(foreign)))  # written without this backbone's checks
    put(store, spec, "good", 5)
    with caplog.at_level(logging.ERROR):
        sync.reload()
        put(store, spec, "other", 6)
        sync.poll()
    assert set(sync.engine.tasks()) == {"good", "other"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "foreign" in r.getMessage()]
    assert len(errors) == 1
