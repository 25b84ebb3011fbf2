"""Bearer-key auth: /tasks mutations need an admin key; predict optionally a predict key; probes stay open."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.auth import key_matches
from server.settings import Settings
from tests.helpers import random_bias_set
from tests.server_support import replace, serving, upload

ADMIN = "admin-key-0123456789abcdef"
READER = "reader-key-0123456789abcdef"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_mutations_need_an_admin_key(tmp_path, tiny_backbone):
    bs = random_bias_set(tiny_backbone.spec, "t", seed=1)
    with serving(tmp_path / "s", tiny_backbone, api_keys=[ADMIN]) as c:
        r = upload(c, bs)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        assert upload(c, bs, headers={"Authorization": f"Basic {ADMIN}"}).status_code == 401
        r = upload(c, bs, headers=bearer("wrong-key-0123456789abcdef"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert upload(c, bs, headers=bearer(ADMIN)).status_code == 201
        assert replace(c, "t", bs).status_code == 401
        assert replace(c, "t", bs, headers=bearer(ADMIN)).status_code == 201
        assert c.post("/tasks/t/rollback").status_code == 401
        assert c.post("/tasks/t/rollback", headers=bearer(ADMIN)).status_code == 200
        # predict, listing, health and metrics stay open when only admin keys are set
        assert c.post("/predict/t", json={"inputs": "x"}).status_code == 200
        assert c.get("/tasks").status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        assert c.get("/metrics").status_code == 200
        assert c.delete("/tasks/t").status_code == 401
        assert c.delete("/tasks/t", headers=bearer("x" * 30)).status_code == 403
        assert c.delete("/tasks/t", headers=bearer(ADMIN)).status_code == 204


def test_predict_keys_protect_predict_and_listing(tmp_path, tiny_backbone):
    with serving(tmp_path / "s", tiny_backbone, api_keys=[ADMIN], predict_api_keys=[READER]) as c:
        assert upload(c, random_bias_set(tiny_backbone.spec, "t", seed=2), headers=bearer(ADMIN)).status_code == 201
        assert c.post("/predict/t", json={"inputs": "x"}).status_code == 401
        assert c.post("/predict", json={"items": [{"task": "t", "inputs": "x"}]}).status_code == 401
        assert c.post("/predict/t", json={"inputs": "x"}, headers=bearer("nope" * 5)).status_code == 403
        assert c.post("/predict/t", json={"inputs": "x"}, headers=bearer(READER)).status_code == 200
        assert c.post("/predict/t", json={"inputs": "x"}, headers=bearer(ADMIN)).status_code == 200
        assert c.get("/tasks").status_code == 401 and c.get("/tasks", headers=bearer(READER)).status_code == 200
        # a predict key is not an admin key
        assert upload(c, random_bias_set(tiny_backbone.spec, "u", seed=3), headers=bearer(READER)).status_code == 403
        assert c.get("/healthz").status_code == 200 and c.get("/metrics").status_code == 200


def test_key_matching_and_settings():
    assert key_matches(ADMIN, [READER, ADMIN]) and not key_matches(ADMIN[:-1], [ADMIN]) and not key_matches(ADMIN, [])
    assert Settings(api_keys=f"{ADMIN}, {READER}").api_keys == [ADMIN, READER]  # as the env var gives it
    with pytest.raises(ValidationError, match="at least 16"):
        Settings(api_keys=["short"])
