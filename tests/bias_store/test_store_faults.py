"""The store degrades per task, never per server: every fault an operator or a crash can leave.

Each case damages a real store folder, then checks the store itself and a server on it:
the bad task is reported (``problems()``, GET /tasks ``unhealthy``, /readyz detail), the
good one keeps serving, nothing answers 500, and a PUT or DELETE repairs the bad task.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bias_store import FilesystemStore, ValidatedUpload
from bias_store.errors import CorruptTask
from bias_store.format import dumps
from tests.helpers import random_bias_set
from tests.server_support import replace, serving


def _store(tmp_path: Path, spec) -> FilesystemStore:
    store = FilesystemStore(tmp_path / "s")
    for name, seed in (("good", 1), ("bad", 2)):
        bias_set = random_bias_set(spec, name, seed=seed)
        store.put(ValidatedUpload(bias_set, dumps(bias_set)))
    return store


def _corrupt_version(task: Path) -> None:
    (task / "v000001.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")


def _missing_version(task: Path) -> None:
    (task / "v000001.safetensors").unlink()


def _garbage_current(task: Path) -> None:
    (task / "CURRENT").write_bytes(b"\xff\xfe not a pointer")


FAULTS = {"corrupt version file": _corrupt_version, "CURRENT names a missing version": _missing_version,
          "CURRENT unreadable": _garbage_current}


@pytest.mark.parametrize("fault", FAULTS)
def test_one_bad_task_is_skipped_and_reported_and_a_put_repairs_it(fault, tmp_path, tiny_backbone):
    store = _store(tmp_path, tiny_backbone.spec)
    FAULTS[fault](store.folders.dir("bad"))
    assert [r.name for r in store.list()] == ["good"] and list(store.problems()) == ["bad"]
    with serving(tmp_path / "s", tiny_backbone) as c:  # starts despite the bad task
        assert c.post("/predict/good", json={"inputs": "x"}).status_code == 200
        ready = c.get("/readyz").json()
        assert ready["tasks"] == 1 and "bad" in ready["unhealthy_tasks"]
        listing = c.get("/tasks").json()
        states = [(t["name"], t["state"]) for t in listing["tasks"]]  # the catalog lists it, as unservable
        assert states == [("bad", "unservable"), ("good", "resident")] and listing["unhealthy"][0]["name"] == "bad"
        r = c.get("/tasks/bad")
        assert r.status_code == 409 and r.json()["error"]["code"] == "task_unhealthy"
        assert replace(c, "bad", random_bias_set(tiny_backbone.spec, "bad", seed=3)).status_code == 201
        assert c.post("/predict/bad", json={"inputs": "x"}).status_code == 200
        assert c.get("/tasks").json()["unhealthy"] == [] and c.get("/readyz").json()["unhealthy_tasks"] == {}


def test_a_bad_task_appearing_while_running_does_not_stop_syncing_the_others(tmp_path, tiny_backbone):
    store = _store(tmp_path, tiny_backbone.spec)
    from tests.helpers import wait_until

    with serving(tmp_path / "s", tiny_backbone, sync_interval_s=0.05) as c:
        _missing_version(store.folders.dir("bad"))  # "bad" sorts before "good": it used to block it
        store.put(ValidatedUpload(b := random_bias_set(tiny_backbone.spec, "good", seed=9), dumps(b)))
        assert wait_until(lambda: c.post("/predict/good", json={"inputs": "x"}).json().get("version") == 2, timeout=5)
        assert c.get("/readyz").status_code == 200


def test_stray_files_and_a_damaged_change_log_are_survived(tmp_path, tiny_backbone):
    store = _store(tmp_path, tiny_backbone.spec)
    (store.folders.dir("good") / "vbackup.safetensors").write_bytes(b"operator's copy")
    (store.root / "log" / "notes.txt").write_bytes(b"an operator's file")
    newest = sorted((store.root / "log").glob("*.json"))[-1]
    newest.write_bytes(b"\xff\xfe not json")  # the entry of "bad"'s upload
    from tests.helpers import wait_until

    with serving(tmp_path / "s", tiny_backbone, sync_interval_s=0.05) as c:  # starts from the CURRENT files
        assert c.get("/tasks/good").json()["versions"] == [1]
        assert c.post("/predict/bad", json={"inputs": "x"}).status_code == 200
        other = FilesystemStore(store.root)  # another process keeps writing
        bias_set = random_bias_set(tiny_backbone.spec, "good", seed=4)
        other.put(ValidatedUpload(bias_set, dumps(bias_set)))
        assert wait_until(lambda: c.post("/predict/good", json={"inputs": "x"}).json().get("version") == 2, timeout=5)
        assert c.get("/readyz").json()["status"] == "ready"


@pytest.mark.parametrize("marked", [True, False], ids=["writer's markers", "store made before markers"])
def test_crash_leftovers_are_removed_when_a_store_opens(marked, tmp_path, tiny_backbone):
    store = _store(tmp_path, tiny_backbone.spec)
    leftovers = [store.folders.dir("good") / ".tmp-dead-v000002.safetensors", store.root / ".tmp-dead-GENERATION",
                 store.root / ".trash" / "old-123" / "v000001.safetensors", store.folders.dir("never") / ".tmp-x-CURRENT"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    if marked:  # what the killed writers left: only the tasks they were changing are checked
        for name in ("good", "never"):
            (store.root / "pending" / name).write_bytes(b"")
    else:  # a store of a version without markers: checked whole, once
        shutil.rmtree(store.root / "pending")
    FilesystemStore(store.root)
    assert list((store.root / "pending").iterdir()) == []
    assert not any(p.exists() for p in leftovers) and not (store.root / ".trash").exists()
    assert not (store.folders.dir("never")).exists() and [r.name for r in store.list()] == ["bad", "good"]


def test_symlinks_are_refused_and_modes_ignore_the_umask(tmp_path, tiny_backbone):
    old = os.umask(0)
    try:
        store = _store(tmp_path, tiny_backbone.spec)
    finally:
        os.umask(old)
    for path in store.root.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o750 if path.is_dir() else 0o640) or path.name in (".lock", "GENERATION") and mode == 0o640, path
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    store.folders.dir("linked").parent.mkdir(exist_ok=True)  # its shard
    store.folders.dir("linked").symlink_to(outside, target_is_directory=True)
    bias_set = random_bias_set(tiny_backbone.spec, "linked", seed=5)
    with pytest.raises(CorruptTask, match="symlink"):
        store.put(ValidatedUpload(bias_set, dumps(bias_set)))
    store.list()
    assert list(outside.iterdir()) == [] and "linked" in store.problems()
    store.delete("linked")  # removes the link, never what it points to
    assert outside.is_dir() and not (store.folders.dir("linked")).exists()


def test_rollback_checks_the_bytes_it_switches_to_under_the_store_lock(tmp_path, tiny_backbone):
    store = _store(tmp_path, tiny_backbone.spec)
    bias_set = random_bias_set(tiny_backbone.spec, "good", seed=6)
    store.put(ValidatedUpload(bias_set, dumps(bias_set)))
    seen = []

    def check(data: bytes) -> None:
        with open(store.root / ".lock", "rb") as other:  # another process's view of the lock
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        seen.append(data)

    record = store.rollback("good", 1, check=check)
    assert record.version == 1 and seen == [store.get("good", 1)[1]]


def test_a_read_only_store_answers_503_and_readyz_says_so(tmp_path, tiny_backbone):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    try:
        _store(mount, tiny_backbone.spec)
        with serving(mount / "s", tiny_backbone) as c:
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            assert c.get("/readyz").json()["store_writable"] is False
            r = replace(c, "good", random_bias_set(tiny_backbone.spec, "good", seed=7))
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
            assert "Read-only" in r.json()["error"]["message"] and r.headers["retry-after"]
            assert c.delete("/tasks/good").status_code == 503
            assert c.post("/predict/good", json={"inputs": "x"}).status_code == 200  # serving goes on
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
