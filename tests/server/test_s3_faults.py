"""The S3 store degrades per task, like the folder store (tests/bias_store/test_store_faults.py).

A real SeaweedFS. One task's version object is overwritten with garbage, another task's
pointer names a version whose object is gone: a server, eager or lazy, skips each with
a logged reason and reports it unhealthy, while every other task serves and syncs; a PUT
repairs the task.
"""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from bias_store import ValidatedUpload
from bias_store.backends.s3 import S3Store
from bias_store.backends.s3.objects import S3Objects
from bias_store.format import dumps
from tests.helpers import random_bias_set
from tests.seaweedfs import BUCKET, CREDENTIALS
from tests.server_support import TEXTS, live_server


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)


def _put(store: S3Store, spec, name: str, seed: int):
    bias_set = random_bias_set(spec, name, seed=seed)
    return store.put(ValidatedUpload(bias_set, dumps(bias_set)))


@pytest.mark.parametrize("load", ["eager", "lazy"])
def test_a_damaged_task_is_skipped_and_reported_and_the_others_serve_and_sync(load, seaweedfs, tiny_backbone, caplog):
    spec, prefix = tiny_backbone.spec, f"faults-{uuid.uuid4().hex[:8]}"
    client = seaweedfs.client()
    store = S3Store(S3Objects(client, BUCKET, prefix))
    for i, name in enumerate(("corrupt", "dangling", "good")):
        _put(store, spec, name, seed=i)
    # Outside the store's conditional writes, as a bad tool or a bucket policy might do.
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/tasks/corrupt/v000001.safetensors", Body=b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    client.delete_object(Bucket=BUCKET, Key=f"{prefix}/tasks/dangling/v000001.safetensors")

    assert [r.name for r in store.list()] == ["good"] and sorted(store.problems()) == ["corrupt", "dangling"]
    url = f"s3://{BUCKET}/{prefix}"
    with caplog.at_level(logging.ERROR), live_server(
        url, tiny_backbone, s3_endpoint_url=seaweedfs.endpoint, sync_interval_s=0.05, load=load, warm_up_tasks=0
    ) as base, httpx.Client(base_url=base, timeout=30) as c:
        assert c.post("/predict/good", json={"inputs": TEXTS}).status_code == 200
        for name in ("corrupt", "dangling"):
            r = c.post(f"/predict/{name}", json={"inputs": TEXTS})
            assert r.status_code == 409 and r.json()["error"]["code"] == "task_unhealthy", r.text
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["tasks"] == 1 and sorted(ready["unhealthy_tasks"]) == ["corrupt", "dangling"]
        assert "does not hold the bytes" in ready["unhealthy_tasks"]["corrupt"]
        assert "version 1" in ready["unhealthy_tasks"]["dangling"]
        listing = c.get("/tasks").json()  # the catalog: the damaged tasks are listed, with their state and why
        assert [(t["name"], t["state"], t["loaded"]) for t in listing["tasks"]] == [
            ("corrupt", "unservable", False), ("dangling", "unservable", False), ("good", "resident", True)]
        assert "does not hold the bytes" in listing["tasks"][0]["reason"]
        assert sorted(u["name"] for u in listing["unhealthy"]) == ["corrupt", "dangling"]
        assert c.get("/tasks/dangling").json()["error"]["code"] == "task_unhealthy"

        writer = S3Store(S3Objects(seaweedfs.client(), BUCKET, prefix))  # another replica keeps writing
        generation = _put(writer, spec, "good", seed=7).generation
        again = c.post("/predict/good", json={"inputs": TEXTS}, params={"min_generation": generation})
        assert again.status_code == 200 and again.json()["version"] == 2

        fixed = c.put("/tasks/corrupt", files={"file": ("s.safetensors", dumps(random_bias_set(spec, "corrupt", seed=8)))})
        assert fixed.status_code == 201, fixed.text
        assert c.post("/predict/corrupt", json={"inputs": TEXTS}).status_code == 200
        assert sorted(c.get("/readyz").json()["unhealthy_tasks"]) == ["dangling"]
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "corrupt" in logged and "dangling" in logged
