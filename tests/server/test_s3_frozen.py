"""A frozen S3 endpoint (SIGSTOP of SeaweedFS, its own instance here): `/readyz` degrades within seconds, an
upload answers 503 within the bounded S3 timeouts (not botocore's 60 s), loaded tasks keep serving, and all of it
recovers after SIGCONT."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest

from bias_store.format import dumps
from tests.helpers import random_bias_set, wait_until
from tests.seaweedfs import BUCKET, CREDENTIALS, SeaweedFS
from tests.server_support import TEXTS, live_server

# A read timeout far above what the test allows: the stall is noticed by the watcher's clock, not by a timeout.
TIMEOUTS = {"s3_connect_timeout_s": 1.0, "s3_read_timeout_s": 30.0, "s3_max_attempts": 1}


@pytest.fixture
def own_seaweedfs(tmp_path, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    server = SeaweedFS(tmp_path / "weed")  # not the session's: freezing it must not stall other tests
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            os.kill(server.proc.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM until continued
        server.stop()


def _upload(c: httpx.Client, spec, seed: int) -> httpx.Response:
    return c.post("/tasks", files={"file": ("s.safetensors", dumps(random_bias_set(spec, "t", seed=seed)))})


def test_a_frozen_endpoint_degrades_readyz_and_uploads_answer_503_quickly(own_seaweedfs, tiny_backbone):
    url = f"s3://{BUCKET}/frozen-{uuid.uuid4().hex[:8]}"
    with live_server(url, tiny_backbone, s3_endpoint_url=own_seaweedfs.endpoint, sync_interval_s=0.1, **TIMEOUTS) as base, \
            httpx.Client(base_url=base, timeout=30) as c:
        assert _upload(c, tiny_backbone.spec, 1).status_code == 201
        assert c.get("/readyz").json()["store"] == "ok"

        os.kill(own_seaweedfs.proc.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        assert wait_until(lambda: c.get("/readyz").json()["status"] == "degraded", timeout=8), "readyz still says ok"
        ready = c.get("/readyz").json()
        assert ready["store"].startswith("unreachable: ") and time.monotonic() - frozen < 8
        started = time.monotonic()
        refused = _upload(c, tiny_backbone.spec, 2)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable", refused.text
        assert time.monotonic() - started < 4, "an upload waited longer than the S3 timeouts allow"
        assert c.post("/predict/t", json={"inputs": TEXTS}).status_code == 200  # loaded tasks keep serving

        os.kill(own_seaweedfs.proc.pid, signal.SIGCONT)
        assert wait_until(lambda: c.get("/readyz").json()["status"] == "ready", timeout=30), c.get("/readyz").text
        again = _upload(c, tiny_backbone.spec, 3)
        assert again.status_code == 201 and again.json()["version"] == 2, again.text
