"""`bitfit serve` as a real process: HTTP, multipart upload, a second server on the same store, SIGTERM.

One subprocess serves the tiny backbone; an in-process app on the same store folder plays
the second server. The subprocess batches with a long max wait (300 ms), so a predict is
reliably still in flight when SIGTERM arrives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bias_store.format import dumps
from tests.helpers import free_port, random_bias_set, wait_until
from tests.server_support import serving, upload

ROOT = Path(__file__).resolve().parents[2]
SYNC_S = 2.0  # the bound for another process to see a change


@pytest.fixture
def server(tmp_path, tiny_bert_dir, tiny_backbone):
    """A `bitfit serve` subprocess with a preloaded task; yields (base url, process, store)."""
    store, port = tmp_path / "store", free_port()
    preload_file = tmp_path / "demo.safetensors"
    preload_file.write_bytes(dumps(random_bias_set(tiny_backbone.spec, "demo", seed=1)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "BITFIT_MAX_WAIT_MS": "300", "BITFIT_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "server.process.cli", "--log-level", "WARNING", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--store", str(store), "--backbone", str(tiny_bert_dir), "--preload", str(preload_file)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(ready, timeout=90, interval=0.2), "server did not become ready"
    assert proc.poll() is None, proc.stdout.read()
    try:
        yield url, proc, store
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_real_server_upload_predict_sync_and_graceful_shutdown(server, tiny_backbone, tmp_path):
    """One server process through its life; each step below leaves the state the next one uses."""
    url, proc, store = server
    with httpx.Client(base_url=url, timeout=30) as http:
        upload_file = upload_and_predict_over_http(http, tiny_backbone.spec, tmp_path)
        seen_after = sync_with_a_second_server(http, store, tiny_backbone, upload_file)
        assert seen_after < SYNC_S
        concurrent_tasks_share_a_forward(http, url)
        a_client_that_gives_up_costs_no_forward(http, url)
        response = sigterm_while_a_predict_waits(http, url, proc)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] in {"negative", "positive"}
    # uvicorn re-raises the signal it caught once shutdown is complete: a clean exit "by SIGTERM".
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)


def upload_and_predict_over_http(http: httpx.Client, spec, tmp_path: Path) -> Path:
    """Health, a curl-style predict, and a real multipart upload; returns the uploaded file."""
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json()["tasks"] == 1
    # curl-style: form content type, JSON body
    r = http.post("/predict/demo", content=b'{"inputs": "a gorgeous, witty film"}',
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["version"] == 1

    # A real multipart upload of a real safetensors file.
    path = tmp_path / "upload.safetensors"
    path.write_bytes(dumps(random_bias_set(spec, "fromhttp", seed=2)))
    with open(path, "rb") as f:
        r = http.post("/tasks", files={"file": ("upload.safetensors", f, "application/octet-stream")}, data={"name": "viahttp"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "viahttp" and r.json()["version"] == 1
    assert http.post("/predict/viahttp", json={"inputs": ["one", "two"]}).status_code == 200
    return path


def sync_with_a_second_server(http: httpx.Client, store: Path, tiny_backbone, upload_file: Path) -> float:
    """A second server (this process) on the same store folder, changes made on either side;
    returns how long this process took to see the subprocess's upload."""
    spec = tiny_backbone.spec
    with serving(store, tiny_backbone) as local:
        assert {t["name"] for t in local.get("/tasks").json()["tasks"]} == {"demo", "viahttp"}
        assert local.post("/predict/viahttp", json={"inputs": "x"}).status_code == 200

        # subprocess -> this process
        with open(upload_file, "rb") as f:
            assert http.put("/tasks/late", files={"file": ("u", f)}).status_code == 201
        t0 = time.monotonic()
        assert wait_until(lambda: local.post("/predict/late", json={"inputs": "x"}).status_code == 200, SYNC_S)
        seen_after = time.monotonic() - t0

        # this process -> subprocess: a new task, then a replacement, then a delete
        assert upload(local, random_bias_set(spec, "local", seed=3)).status_code == 201
        assert wait_until(lambda: http.post("/predict/local", json={"inputs": "x"}).status_code == 200, SYNC_S)
        assert upload(local, random_bias_set(spec, "local", seed=4)).status_code == 201
        assert wait_until(lambda: http.post("/predict/local", json={"inputs": "x"}).json()["version"] == 2, SYNC_S)
        assert local.delete("/tasks/viahttp").status_code == 204
        assert wait_until(lambda: http.post("/predict/viahttp", json={"inputs": "x"}).status_code == 404, SYNC_S)
    return seen_after


def metric(http: httpx.Client, name: str) -> float:
    line = next(x for x in http.get("/metrics").text.splitlines() if x.startswith(name + " "))
    return float(line.split()[-1])


def concurrent_tasks_share_a_forward(http: httpx.Client, url: str) -> None:
    """Concurrent requests for different tasks share one forward pass."""
    batches, mixed = metric(http, "bitfit_batch_tasks_count"), metric(http, "bitfit_batch_tasks_sum")
    callers = [threading.Thread(target=lambda t=t: httpx.post(f"{url}/predict/{t}", json={"inputs": "x"}, timeout=30))
               for t in ("demo", "local", "demo", "local")]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    forwards = metric(http, "bitfit_batch_tasks_count") - batches
    assert forwards < 4  # fewer forwards than requests
    assert metric(http, "bitfit_batch_tasks_sum") - mixed > forwards  # some mixed


def a_client_that_gives_up_costs_no_forward(http: httpx.Client, url: str) -> None:
    """A client that gives up while its rows wait costs no forward pass."""
    batches = metric(http, "bitfit_batch_tasks_count")
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{url}/predict/demo", json={"inputs": "x"}, timeout=0.1)
    assert wait_until(lambda: 'reason="client_gone"} 1.0' in http.get("/metrics").text, 5)
    time.sleep(0.4)  # past the 300 ms batch wait
    assert metric(http, "bitfit_batch_tasks_count") == batches


def sigterm_while_a_predict_waits(http: httpx.Client, url: str, proc: subprocess.Popen) -> httpx.Response:
    """SIGTERM while a predict waits in the batch queue; returns that predict's answer."""
    result: dict = {}

    def slow_predict() -> None:
        with httpx.Client(base_url=url, timeout=30) as other:
            result["response"] = other.post("/predict/demo", json={"inputs": ["in flight"]})

    caller = threading.Thread(target=slow_predict)
    caller.start()
    assert wait_until(lambda: http.get("/readyz").json()["queue_rows"] == 1, 5, interval=0.01)
    proc.send_signal(signal.SIGTERM)
    caller.join(timeout=30)
    return result["response"]


def test_preload_never_goes_backwards(tmp_path, tiny_backbone):
    from bias_store.backends.folder import FilesystemStore
    from server.catalog.preload import PreloadError, preload
    from server.catalog.validation import UploadValidator
    from server.process.metrics import Metrics

    store, validator = FilesystemStore(tmp_path / "s"), UploadValidator(tiny_backbone.spec, 1 << 20, Metrics())
    file = tmp_path / "t.safetensors"
    file.write_bytes(dumps(random_bias_set(tiny_backbone.spec, "t", seed=1)))
    preload(store, validator, [file])
    preload(store, validator, [file])  # a restart
    assert [(r.name, r.version) for r in store.list()] == [("t", 1)]
    # An operator's update (v2) survives a restart with the older bundled file ...
    store.put(validator(dumps(random_bias_set(tiny_backbone.spec, "t", seed=2))))
    preload(store, validator, [file])
    assert [(r.name, r.version) for r in store.list()] == [("t", 2)]
    # ... unless the policy says replace (then identical bytes still add nothing).
    preload(store, validator, [file], policy="replace")
    preload(store, validator, [file], policy="replace")
    assert [(r.name, r.version) for r in store.list()] == [("t", 3)]
    store.delete("t")
    preload(store, validator, [file])  # absent again: stored
    assert [(r.name, r.version) for r in store.list()] == [("t", 1)]
    with pytest.raises(PreloadError, match="missing.safetensors"):
        preload(store, validator, [tmp_path / "missing.safetensors"])
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(PreloadError, match="bad.safetensors.*not a valid bias set"):
        preload(store, validator, [tmp_path / "bad.safetensors"])


def test_serve_refuses_a_missing_preload_file_naming_it(tmp_path, capsys):
    import argparse

    from server.process import serve_cli

    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    args = parser.parse_args(["--store", str(tmp_path / "s"), "--preload", str(tmp_path / "examples" / "gone.safetensors")])
    assert serve_cli.run(args) == 2
    assert "gone.safetensors" in capsys.readouterr().err
