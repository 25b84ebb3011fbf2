"""A writer killed with SIGKILL at random moments, round after round: the store stays consistent.

Each round starts a process that stores, rolls back and deletes tasks as fast as it can,
and kills it mid-flight. The next opening of the store (what a restarting server does)
must find every task whole: CURRENT names a version whose bytes have its sha256, and no
temp file, .trash folder or half-made task folder is left.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from bias_store import FilesystemStore
from bias_store.backends.folder.tasks import TaskFolders
from bias_store.format import dumps
from tests.helpers import random_bias_set

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import random, sys
from bias_store import FilesystemStore, ValidatedUpload
from bias_store.errors import BiasStoreError
from bias_store.format import loads
store = FilesystemStore(sys.argv[1], keep_versions=2)
files = [open(p, "rb").read() for p in sys.argv[2:]]
rng = random.Random()
print("ready", flush=True)
while True:
    data = rng.choice(files)
    try:
        if rng.random() < 0.7:
            store.put(ValidatedUpload(loads(data), data))
        elif rng.random() < 0.5:
            name = loads(data).meta.task
            store.rollback(name, max(1, store.get(name)[0].version - 1))
        else:
            store.delete(loads(data).meta.task)
    except BiasStoreError:
        pass
"""


def test_sigkill_at_random_points_leaves_a_consistent_store(tmp_path, tiny_backbone):
    files = []
    for i in range(6):
        path = tmp_path / f"{i}.safetensors"
        path.write_bytes(dumps(random_bias_set(tiny_backbone.spec, f"task{i % 3}", seed=i)))
        files.append(str(path))
    root, rng = tmp_path / "store", random.Random(7)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), *files], cwd=ROOT, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = FilesystemStore(root)  # a restart: recovery runs here
        leftovers = [p for p in root.rglob("*") if p.name.startswith(".tmp-") or p.name == ".trash"]
        assert not leftovers, leftovers
        assert all(any(d.iterdir()) for d in TaskFolders(root / "tasks").dirs()), "an empty task folder was left"
        records = store.list()
        assert store.problems() == {}
        for record in records:
            _, data = store.get(record.name)
            assert hashlib.sha256(data).hexdigest() == record.sha256
        assert {r.name: r.sha256 for r in records} == store.state()  # the change log agrees with the folders
