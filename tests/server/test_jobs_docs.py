"""docs/TRAINING.md's curl walk-through, run as written against a real server with its
training worker (the packaged MiniLM): upload, follow the events, predict with the new task."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server_support import running

pytestmark = [pytest.mark.minilm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```bash\n(# walk-through: training over HTTP\n.*?)^```", re.S | re.M)


def walk_through() -> str:
    found = BLOCK.findall((ROOT / "docs" / "TRAINING.md").read_text())
    assert len(found) == 1, "docs/TRAINING.md has lost its walk-through block"
    return found[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_training_walk_through_runs_as_written(tmp_path, minilm_backbone):
    with running(tmp_path / "store", minilm_backbone, train_workers=1) as (http, _):
        script = walk_through().replace("localhost:8000", str(http.base_url).removeprefix("http://").rstrip("/"))
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        out = done.stdout
        assert "event: status" in out and '"status":"succeeded"' in out and "event: progress" in out
        job = json.loads(Path("/tmp/job.json").read_text())
        record = http.get(f"/jobs/{job['id']}").json()
        assert record["status"] == "succeeded" and record["result"]["version"] == 1
        predicted, _ = json.JSONDecoder().raw_decode(out[out.index('{"task":"reviews"'):])
        assert predicted["version"] == 1 and predicted["predictions"][0]["label"] in ("positive", "negative")
        assert "learning_curves.png" in out
        assert Path("/tmp/learning_curves.png").read_bytes()[:4] == b"\x89PNG"
