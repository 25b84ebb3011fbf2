"""The filesystem bias store: versions, rollback, delete, generation, crash safety, other processes."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bias_store import FilesystemStore, TaskNotFound, VersionNotFound, dumps, loads, validate_bytes, validate_upload
from tests.helpers import random_bias_set


class Store(FilesystemStore):
    """The store as the server uses it: each upload validated once by the caller, then put."""

    def __init__(self, root, spec, keep):
        super().__init__(root, keep_versions=keep)
        self.spec = spec

    def put_bytes(self, data, name=None):
        return self.put(validate_upload(data, self.spec, name=name))


def make_store(root, spec, keep=3):
    return Store(root, spec, keep)


@pytest.fixture()
def spec(tiny_backbone):
    return tiny_backbone.spec


def test_puts_make_versions_keep_the_last_n_and_roll_back(tmp_path, spec):
    store = make_store(tmp_path, spec, keep=3)
    blobs = [dumps(random_bias_set(spec, "t", seed=i)) for i in range(5)]
    for i, blob in enumerate(blobs, start=1):
        assert store.put_bytes(blob).version == i
    record, data = store.get("t")
    assert record.version == 5 and data == blobs[4]
    assert record.versions == (3, 4, 5)
    with pytest.raises(VersionNotFound, match=r"available versions: \[3, 4, 5\]"):
        store.get("t", 1)

    rolled = store.rollback("t", 3)
    assert rolled.version == 3
    assert store.get("t")[1] == blobs[2]
    assert store.put_bytes(blobs[0]).version == 6  # versions never go backwards


def test_name_override_rewrites_the_metadata(tmp_path, spec):
    store = make_store(tmp_path, spec)
    record = store.put_bytes(dumps(random_bias_set(spec, "original")), name="renamed")
    assert record.name == "renamed" and record.meta.task == "renamed"
    assert loads(store.get("renamed")[1]).meta.task == "renamed"
    assert [r.name for r in store.list()] == ["renamed"]


def test_delete_and_unknown_names(tmp_path, spec):
    store = make_store(tmp_path, spec)
    store.put_bytes(dumps(random_bias_set(spec, "a")))
    store.put_bytes(dumps(random_bias_set(spec, "b")))
    store.delete("a")
    assert [r.name for r in store.list()] == ["b"]
    with pytest.raises(TaskNotFound, match="known tasks: b"):
        store.get("a")
    with pytest.raises(TaskNotFound):
        store.delete("a")
    with pytest.raises(TaskNotFound):
        store.get("../etc/passwd")
    # A re-upload after delete has new content identity, so watchers can tell it apart.
    again = store.put_bytes(dumps(random_bias_set(spec, "a", seed=9)))
    assert again.version == 1


def test_generation_and_state_show_changes_from_another_store_object(tmp_path, spec):
    writer, reader = make_store(tmp_path, spec), make_store(tmp_path, spec)
    seen, state = reader.generation(), reader.state()
    assert state == {}
    first = writer.put_bytes(dumps(random_bias_set(spec, "w")))
    assert reader.generation() != seen
    seen = reader.generation()
    assert reader.state() == {"w": first.sha256}
    second = writer.put_bytes(dumps(random_bias_set(spec, "w", seed=1)))
    assert reader.generation() != seen and reader.state() == {"w": second.sha256}
    seen = reader.generation()
    assert reader.generation() == seen  # reading changes nothing
    writer.delete("w")
    assert reader.generation() != seen and reader.state() == {}


def test_readers_always_get_one_whole_version(tmp_path, spec):
    store = make_store(tmp_path, spec, keep=2)
    blobs = {hashlib.sha256(b).hexdigest(): b for b in (dumps(random_bias_set(spec, "r", seed=i)) for i in range(4))}
    store.put_bytes(next(iter(blobs.values())))
    errors, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                record, data = store.get("r")
                if hashlib.sha256(data).hexdigest() not in blobs or record.sha256 not in blobs:
                    errors.append("mixed read")
            except VersionNotFound:
                pass  # pruned between reading CURRENT and the file: the caller retries

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(30):
        store.put_bytes(list(blobs.values())[i % 4])
    stop.set()
    for t in readers:
        t.join()
    assert not errors


WRITER = textwrap.dedent(
    """
    import sys, itertools
    from bias_store import FilesystemStore, dumps, validate_upload
    from engine import load_backbone
    from tests.helpers import random_bias_set
    spec = load_backbone(sys.argv[2], device="cpu").spec
    store = FilesystemStore(sys.argv[1], keep_versions=2)
    uploads = [validate_upload(dumps(random_bias_set(spec, f"t{i % 3}", seed=i)), spec) for i in range(6)]
    print("ready", flush=True)
    for i in itertools.count():
        store.put(uploads[i % 6])
    """
)


def test_a_killed_writer_leaves_every_task_at_a_whole_version(tmp_path, spec, tiny_bert_dir):
    root = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(tiny_bert_dir)],
        stdout=subprocess.PIPE, cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)  # no cleanup, no finally blocks: a crash
    proc.wait()

    store = make_store(root, spec, keep=2)
    records = store.list()
    assert {r.name for r in records} == {"t0", "t1", "t2"}
    for record in records:
        _, data = store.get(record.name)
        assert hashlib.sha256(data).hexdigest() == record.sha256
        validate_bytes(data, spec)  # a whole, valid file
