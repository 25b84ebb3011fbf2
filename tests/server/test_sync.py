"""StoreSync: the engine follows the store's change log (other writers' puts and deletes), once per change."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from bias_store import FilesystemStore, ValidatedUpload, dumps, validate_upload
from engine import Engine
from server.catalog.catalog import TaskCatalog
from server.catalog.sync import StoreSync
from server.catalog.validation import UploadValidator, fetch
from server.process.metrics import Metrics
from tests.helpers import random_bias_set


def make(tmp_path, backbone, eager=True):
    store = FilesystemStore(tmp_path / "s")
    validator = UploadValidator(backbone.spec, 1 << 20, Metrics())
    catalog = TaskCatalog(Engine(backbone, capacity=16, grow=False), partial(fetch, store, validator), None)
    return store, StoreSync(store, catalog, eager=eager)


def served(sync) -> dict[str, str]:
    """task -> sha256 of the version a slot serves."""
    return {name: state.handle.sha256 for name, state in sync.catalog.states.items() if state.handle is not None}


def put(store, spec, name, seed):
    return store.put(validate_upload(dumps(random_bias_set(spec, name, seed=seed)), spec))


def test_another_writers_puts_and_deletes_reach_the_engine(tmp_path, tiny_backbone):
    spec = tiny_backbone.spec
    store, sync = make(tmp_path, tiny_backbone)
    put(store, spec, "a", 1)
    assert sync.reload() == 1 and set(served(sync)) == {"a"}
    writer = FilesystemStore(tmp_path / "s")  # another process on the same folder
    b = put(writer, spec, "b", 2)
    a2 = put(writer, spec, "a", 3)
    assert sync.poll() == 2
    assert served(sync) == {"a": a2.sha256, "b": b.sha256}
    assert sync.poll() == 0  # nothing new: nothing re-read
    writer.delete("b")
    assert sync.poll() == 1 and set(served(sync)) == {"a"} and set(sync.catalog.stored) == {"a"}
    assert asyncio.run(sync.generation.wait(sync.generation.value, timeout=0.01))
    assert not asyncio.run(sync.generation.wait(sync.generation.value + 1, timeout=0.01))  # no watcher running: times out


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
    assert set(served(sync)) == {"good", "other"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "foreign" in r.getMessage()]
    assert len(errors) == 1
