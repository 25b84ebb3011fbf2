"""bench/gpu_check.sh: stopped while a step runs, it leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _marked(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (every child inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_stopped_dry_run_leaves_no_child_running(tmp_path):
    marker = f"GPU_CHECK_TEST_{uuid.uuid4().hex}"
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), marker: "1"}
    script = subprocess.Popen(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "gpu_check.log"
    deadline = time.monotonic() + 90
    try:  # stop it while a step runs (what `timeout` does: SIGTERM to the script only)
        while "== cuda-tests (timeout" not in (log.read_text() if log.exists() else ""):
            assert script.poll() is None and time.monotonic() < deadline, "the dry run never reached its first step"
            time.sleep(0.2)
        time.sleep(1)
        assert len(_marked(marker)) > 2  # bash, tee, timeout, python: a tree to stop
        script.send_signal(signal.SIGTERM)
        assert script.wait(timeout=20) == 143
        time.sleep(0.5)
        assert _marked(marker) == []
    finally:
        for pid in _marked(marker):  # never leave them to the next test
            os.kill(pid, signal.SIGKILL)
