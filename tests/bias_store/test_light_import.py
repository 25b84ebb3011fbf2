"""`import bias_store` is light: no torch, no boto3 (issue 19: `bitfit --help` took 7-8 s)."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
sys.modules["boto3"] = None
import bias_store
from bias_store import open_store, errors, FilesystemStore, TaskNotFound
from bias_store.errors import CorruptTask
store = open_store(sys.argv[1])
assert store.generation() == 0 and store.list() == []
try:
    store.get("nothing")
except TaskNotFound:
    pass
print("ok")
"""


def test_the_package_and_the_store_import_and_open_with_torch_blocked(tmp_path):
    done = subprocess.run([sys.executable, "-c", BLOCKED, str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_importing_the_package_loads_neither_torch_nor_boto3():
    probe = "import sys, bias_store, bias_store.open_store; print(sorted({'torch', 'boto3', 'safetensors.torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
