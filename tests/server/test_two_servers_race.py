"""Two `bitfit serve` processes on one store, churned for a fixed time: delete, re-upload, rollback.

No answer is a 5xx, and afterwards each server serves exactly the stored bytes: the
checksum it reports equals the sha256 of the file CURRENT names, and its predictions equal
the engine's for those bytes (a rollback racing a delete + re-upload used to register old
tensors under the new checksum).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bias_store import FilesystemStore, TaskNotFound
from bias_store.format import dumps
from bias_store.validate import validate_bytes
from engine import Engine
from tests.helpers import free_port, random_bias_set, wait_until

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("r0", "r1")
CHURN_S = 6.0


def _serve(store: Path, backbone_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "BITFIT_SYNC_INTERVAL_S": "0.05",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "server.process.cli", "--log-level", "WARNING", "serve", "--port", str(port), "--store", str(store),
           "--backbone", str(backbone_dir), "--device", "cpu"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), f"http://127.0.0.1:{port}"


def test_two_servers_churning_one_store_never_5xx_and_serve_the_stored_bytes(tmp_path, tiny_bert_dir, tiny_backbone):
    store = tmp_path / "store"
    procs = [_serve(store, tiny_bert_dir) for _ in range(2)]
    try:
        for _, url in procs:
            assert wait_until(lambda url=url: _ready(url), timeout=120), "a server did not start"
        statuses: list[int] = []

        def churn(url: str, seed: int) -> None:
            rng, deadline = random.Random(seed), time.monotonic() + CHURN_S
            with httpx.Client(base_url=url, timeout=30) as http:
                while time.monotonic() < deadline:
                    task, action = rng.choice(TASKS), rng.random()
                    if action < 0.4:
                        data = dumps(random_bias_set(tiny_backbone.spec, task, seed=rng.randrange(1000)))
                        r = http.put(f"/tasks/{task}", files={"file": ("t.safetensors", data)})
                    elif action < 0.6:
                        r = http.post(f"/tasks/{task}/rollback")
                    elif action < 0.75:
                        r = http.delete(f"/tasks/{task}")
                    else:
                        r = http.post(f"/predict/{task}", json={"inputs": "a witty film"})
                    statuses.append(r.status_code)

        threads = [threading.Thread(target=churn, args=(url, i)) for i, (_, url) in enumerate(procs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses and max(statuses) < 500, sorted(set(statuses))

        # Both settle on the store; each serves exactly its current bytes.
        truth = FilesystemStore(store)
        reference = Engine(tiny_backbone)
        for task in TASKS:
            try:
                record, data = truth.get(task)
            except TaskNotFound:
                continue  # deleted last
            reference.register(validate_bytes(data, tiny_backbone.spec), record.version, record.sha256)
            expected = reference.predict(task, ["a witty film"])[0].scores
            for _, url in procs:
                def settled(url=url, task=task, sha=record.sha256) -> bool:
                    info = httpx.get(f"{url}/tasks/{task}").json()
                    return info.get("sha256") == sha and info.get("loaded") is True
                assert wait_until(settled, timeout=5), (url, task)
                served = httpx.post(f"{url}/predict/{task}", json={"inputs": "a witty film"}).json()
                assert served["version"] == record.version
                for label, score in expected.items():
                    assert abs(served["predictions"][0]["scores"][label] - score) < 1e-4
    finally:
        for proc, _ in procs:
            proc.kill()
            proc.wait(timeout=10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
