"""Start-up through the app's lifespan: what answers before it, what it serves from the store, how it fails."""

from __future__ import annotations

import pytest

from bias_store.format import dumps
from tests.helpers import random_bias_set
from tests.server_support import serving


def test_before_start_up_only_liveness_answers(tmp_path, tiny_backbone):
    from fastapi.testclient import TestClient

    from server.http.app import create_app
    from server.process.settings import Settings

    client = TestClient(create_app(Settings(store=tmp_path / "s"), backbone=tiny_backbone))  # lifespan not run
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready" and r.headers["retry-after"] == "1"
    assert client.post("/predict/t", json={"inputs": "x"}).status_code == 503


def test_start_up_serves_the_store_and_skips_what_this_backbone_rejects(tmp_path, tiny_backbone):
    from bias_store import FilesystemStore, ValidatedUpload

    raw = FilesystemStore(tmp_path / "s")
    good = random_bias_set(tiny_backbone.spec, "good", seed=50)
    foreign = random_bias_set(tiny_backbone.spec, "foreign", seed=51)
    foreign.meta.backbone_fingerprint = "f" * 64  # trained for another backbone
    for bias_set in (good, foreign):  # stored without this backbone's checks
        raw.put(ValidatedUpload(bias_set, dumps(bias_set)))
    with serving(tmp_path / "s", tiny_backbone) as c:
        assert c.get("/readyz").json()["tasks"] == 1
        assert c.post("/predict/good", json={"inputs": "x"}).status_code == 200
        refused = c.post("/predict/foreign", json={"inputs": "x"})  # stored but unservable: why, not a bare 404
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "task_unhealthy"
        assert "fingerprint" in refused.json()["error"]["reason"]
        listed = {t["name"]: t["loaded"] for t in c.get("/tasks").json()["tasks"]}
        assert listed == {"good": True, "foreign": False}
        assert [u["name"] for u in c.get("/tasks").json()["unhealthy"]] == ["foreign"]
        assert "fingerprint" in c.get("/readyz").json()["unhealthy_tasks"]["foreign"]


def test_a_failed_start_up_says_why_in_one_line(tmp_path, tiny_backbone):
    from server.process.services import StartupError

    bad = tmp_path / "preload.safetensors"
    bad.write_bytes(b"not a bias set")
    with pytest.raises(StartupError, match=r"start-up failed: PreloadError: .*preload\.safetensors.*not a valid bias set"):
        with serving(tmp_path / "s", tiny_backbone, preload=[bad]):
            pass
