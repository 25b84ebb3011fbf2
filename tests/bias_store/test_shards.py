"""Sharded task folders: a new store's layout, an older flat store kept working, and
``bitfit store migrate`` moving one into shards (interrupted, then carried on)."""

from __future__ import annotations

import hashlib
import os

import pytest

from bias_store import FilesystemStore, dumps, validate_upload
from bias_store.backends.folder import migrate as migration
from bias_store.errors import StoreUnavailable
from server.process import cli
from tests.helpers import random_bias_set

NAMES = ["ab", "sentiment", "acme.topics", "t-0001"]  # "ab" is also a shard's name


def put(store, spec, name: str, seed: int):
    return store.put(validate_upload(dumps(random_bias_set(spec, name, seed=seed)), spec))


def flat_store(root, spec) -> dict[str, bytes]:
    """A store as a version before shards made it: tasks/<name>/, no layout marker."""
    store = FilesystemStore(root)
    for i, name in enumerate(NAMES):
        put(store, spec, name, i)
    for name in NAMES:  # moved back where an older version kept them
        os.rename(store.folders.dir(name), root / "tasks" / name)
    for shard in (root / "tasks").iterdir():
        if len(shard.name) == 2 and shard.name not in NAMES:
            shard.rmdir()
    (root / "tasks" / ".layout").unlink()
    return {name: (root / "tasks" / name / "v000001.safetensors").read_bytes() for name in NAMES}


def test_a_new_store_keeps_each_task_in_its_hash_shard(tmp_path, tiny_backbone):
    store = FilesystemStore(tmp_path / "s")
    assert (tmp_path / "s" / "tasks" / ".layout").read_bytes() == b"sharded 256\n"
    for i, name in enumerate(NAMES):
        put(store, tiny_backbone.spec, name, i)
    for name in NAMES:  # where plain tools find it: printf %s NAME | sha256sum | cut -c1-2
        shard = hashlib.sha256(name.encode()).hexdigest()[:2]
        assert (tmp_path / "s" / "tasks" / shard / name / "CURRENT").read_text().startswith("1 ")
    assert sorted(r.name for r in store.list()) == sorted(NAMES)
    store.delete("sentiment")
    assert sorted(FilesystemStore(tmp_path / "s").catalog()[1]) == sorted(set(NAMES) - {"sentiment"})
    assert sorted(r.name for r in FilesystemStore(tmp_path / "s").list()) == sorted(set(NAMES) - {"sentiment"})


def test_an_older_flat_store_keeps_working_then_migrates(tmp_path, tiny_backbone, capsys):
    root = tmp_path / "s"
    files = flat_store(root, tiny_backbone.spec)
    store = FilesystemStore(root)
    assert not store.folders.sharded and sorted(r.name for r in store.list()) == sorted(NAMES)
    put(store, tiny_backbone.spec, "later", 9)  # a flat store is written flat
    assert (root / "tasks" / "later" / "CURRENT").exists()
    before = store.catalog()
    assert cli.main(["store", "migrate", "--store", str(root)]) == 0
    assert "5 task folders moved" in capsys.readouterr().out
    migrated = FilesystemStore(root)
    assert migrated.folders.sharded and migrated.catalog() == before
    assert sorted(r.name for r in migrated.list()) == sorted([*NAMES, "later"])
    for name, data in files.items():
        assert migrated.read(name, 1) == data and migrated.get(name)[1] == data
    assert store.read("ab", 1) == files["ab"]  # a store opened before the migration finds the new places
    put(store, tiny_backbone.spec, "ab", 10)  # and writes there
    assert FilesystemStore(root).get("ab")[0].version == 2
    assert cli.main(["store", "migrate", "--store", str(root)]) == 0  # again: nothing to do
    assert "are sharded" in capsys.readouterr().out


def test_an_interrupted_migration_blocks_opening_and_carries_on(tmp_path, tiny_backbone, monkeypatch):
    root = tmp_path / "s"
    files = flat_store(root, tiny_backbone.spec)
    real, calls = os.rename, []

    def crash_after_two(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise OSError("the machine went down")
        real(src, dst)

    monkeypatch.setattr(migration.os, "rename", crash_after_two)
    with pytest.raises(OSError):
        migration.migrate(root)
    monkeypatch.setattr(migration.os, "rename", real)
    with pytest.raises(StoreUnavailable, match="migrate"):
        FilesystemStore(root)
    assert migration.migrate(root) == len(NAMES) - 2
    store = FilesystemStore(root)
    assert store.folders.sharded and not (root / migration.STAGING).exists()
    assert {name: store.read(name, 1) for name in NAMES} == files


def test_a_crash_between_the_swaps_is_carried_on(tmp_path, tiny_backbone):
    """The flat folder moved away, the sharded one not yet in place: migrate puts it there."""
    root = tmp_path / "s"
    files = flat_store(root, tiny_backbone.spec)
    assert migration.migrate(root) == len(NAMES)
    os.rename(root / "tasks", root / migration.STAGING)  # as the crash left it
    assert migration.migrate(root) == 0
    assert {name: FilesystemStore(root).read(name, 1) for name in NAMES} == files
