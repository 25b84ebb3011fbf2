"""Two servers on one S3 store (a real SeaweedFS): sync through the change log,
read-your-writes, and a store outage that loaded tasks ride out.
"""

from __future__ import annotations

import time
import uuid

import pytest

from bias_store.backends.s3 import S3Store
from bias_store.backends.s3.objects import S3Objects
from tests.helpers import random_bias_set, wait_until
from tests.seaweedfs import BUCKET, CREDENTIALS, SeaweedFS
from tests.server_support import TEXTS, serving, upload


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch):
    for key, value in CREDENTIALS.items():  # the standard AWS way: boto3 reads these
        monkeypatch.setenv(key, value)


def two_servers(server: SeaweedFS, backbone, prefix: str, **settings):
    store = f"s3://{BUCKET}/{prefix}"
    options = {"s3_endpoint_url": server.endpoint, "sync_interval_s": 0.1, **settings}
    return serving(store, backbone, replica_name="a", **options), serving(store, backbone, replica_name="b", **options)


def test_an_upload_through_one_server_is_served_by_the_other(seaweedfs, tiny_backbone):
    spec = tiny_backbone.spec
    first, second = two_servers(seaweedfs, tiny_backbone, f"srv-{uuid.uuid4().hex[:8]}", min_generation_timeout_s=2)
    with first as a, second as b:
        r = upload(a, random_bias_set(spec, "shared", seed=1))
        assert r.status_code == 201, r.text
        generation = r.json()["generation"]
        assert r.headers["x-bitfit-generation"] == str(generation) and r.headers["x-bitfit-replica"] == "a"
        # Read-your-writes: the header (or query) makes b wait until it has applied the upload.
        answer_b = b.post("/predict/shared", json={"inputs": TEXTS}, headers={"X-Bitfit-Min-Generation": str(generation)})
        assert answer_b.status_code == 200, answer_b.text
        assert answer_b.headers["x-bitfit-replica"] == "b"
        answer_a = a.post("/predict/shared", json={"inputs": TEXTS})
        assert answer_a.json() == answer_b.json()

        assert b.post(f"/tasks/shared/rollback?min_generation={generation}").status_code == 404  # one version only
        deleted = a.delete("/tasks/shared")
        gone = int(deleted.headers["x-bitfit-generation"])
        assert b.get(f"/tasks?min_generation={gone}").json()["tasks"] == []
        assert b.post("/predict/shared", json={"inputs": TEXTS}, params={"min_generation": gone}).status_code == 404
        # A generation nobody has made yet: 503 after the configured wait, not a hang.
        late = b.post("/predict/shared", json={"inputs": TEXTS}, headers={"X-Bitfit-Min-Generation": str(gone + 100)})
        assert late.status_code == 503 and late.json()["error"]["code"] == "generation_not_reached"


def test_a_store_outage_keeps_loaded_tasks_serving_and_loses_nothing(tmp_path, tiny_backbone):
    spec = tiny_backbone.spec
    server = SeaweedFS(tmp_path / "seaweedfs")  # our own: this test stops it
    server.start()
    try:
        first, second = two_servers(server, tiny_backbone, "outage")
        with first as a, second as b:
            assert upload(a, random_bias_set(spec, "steady", seed=1)).status_code == 201
            assert wait_until(lambda: b.get("/readyz").json()["tasks"] == 1, 5)

            server.stop()
            down_since = time.monotonic()
            assert wait_until(lambda: b.get("/readyz").json()["status"] == "degraded", 5)
            ready = a.get("/readyz")
            assert ready.status_code == 200 and ready.json()["store"].startswith("unreachable")
            refused = upload(b, random_bias_set(spec, "during", seed=2))
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
            assert refused.headers["retry-after"]
            statuses = []
            while time.monotonic() - down_since < 10:  # the outage lasts 10 s
                for client in (a, b):
                    statuses.append(client.post("/predict/steady", json={"inputs": TEXTS}).status_code)
                time.sleep(0.05)
            assert statuses and set(statuses) == {200}

            server.start()
            assert wait_until(lambda: a.get("/readyz").json()["status"] == "ready", 20)
            for _ in range(5):  # a store just back may still answer a first request with an error: a 503 says retry
                after = upload(b, random_bias_set(spec, "after", seed=3))
                if after.status_code != 503:
                    break
                time.sleep(float(after.headers.get("retry-after", "1")))
            assert after.status_code == 201, after.text
            assert a.get("/tasks/after", params={"min_generation": after.json()["generation"]}).status_code == 200

        log = S3Store(S3Objects(server.client(), BUCKET, "outage")).changes(0)
        assert [(c.generation, c.task) for c in log] == [(1, "steady"), (2, "after")]  # nothing lost, nothing half-done
    finally:
        server.stop()
