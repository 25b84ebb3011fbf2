"""The /tasks API through a TestClient on the tiny backbone: upload, replace, list, show, rollback, delete."""

from __future__ import annotations

from bias_store.format import dumps
from tests.helpers import random_bias_set
from tests.server.test_routes import assert_scores_close, engine_scores
from tests.server_support import TEXTS, replace, upload


def test_upload_replace_list_show_rollback_delete(client, tiny_backbone):
    spec = tiny_backbone.spec
    v1, v2 = random_bias_set(spec, "t", seed=20), random_bias_set(spec, "t", seed=21)
    r = upload(client, v1)
    assert r.status_code == 201
    body = r.json()
    assert (body["name"], body["version"], body["labels"]) == ("t", 1, ["negative", "positive"])
    assert body["size_bytes"] == len(dumps(v1)) and body["num_params"] == v1.num_params and body["tensor_bytes"] == v1.num_bytes

    r = replace(client, "t", v2)
    assert r.status_code == 201 and r.json()["version"] == 2
    # The very next request is served by the new version.
    got = client.post("/predict/t", json={"inputs": TEXTS}).json()
    assert got["version"] == 2
    assert_scores_close([p["scores"] for p in got["predictions"]], engine_scores(tiny_backbone, v2, TEXTS))

    listed = client.get("/tasks").json()["tasks"]
    assert [(t["name"], t["version"], t["state"], t["loaded"]) for t in listed] == [("t", 2, "resident", True)]
    shown = client.get("/tasks/t").json()  # a task's details
    assert shown["versions"] == [1, 2] and shown["problem_type"] == "single_label_classification"
    assert shown["training"] == {"method": "random", "seed": 21} and shown["sha256"] == listed[0]["sha256"]

    r = client.post("/tasks/t/rollback")  # default: the version before the current one
    assert r.status_code == 200 and r.json()["version"] == 1
    got = client.post("/predict/t", json={"inputs": TEXTS}).json()
    assert got["version"] == 1
    assert_scores_close([p["scores"] for p in got["predictions"]], engine_scores(tiny_backbone, v1, TEXTS))
    assert client.post("/tasks/t/rollback", json={"version": 2}).json()["version"] == 2
    r = client.post("/tasks/t/rollback", json={"version": 9})
    assert r.status_code == 404 and r.json()["error"]["code"] == "version_not_found"

    assert client.delete("/tasks/t").status_code == 204
    assert client.post("/predict/t", json={"inputs": "x"}).status_code == 404
    assert client.delete("/tasks/t").status_code == 404
    assert client.get("/tasks").json() == {"tasks": [], "next_cursor": None, "catalog_tasks": 0, "unhealthy": []}


def test_upload_name_override_and_bad_name(client, tiny_backbone):
    r = upload(client, random_bias_set(tiny_backbone.spec, "orig", seed=22), name="renamed")
    assert r.status_code == 201 and r.json()["name"] == "renamed"
    assert client.post("/predict/renamed", json={"inputs": "x"}).status_code == 200
    assert client.post("/predict/orig", json={"inputs": "x"}).status_code == 404
    r = upload(client, random_bias_set(tiny_backbone.spec, "orig", seed=22), name="Bad Name!")
    assert r.status_code == 422 and r.json()["error"]["reason"] == "bad_name"


def test_invalid_bias_sets_are_rejected_with_the_validators_reason(client, tiny_backbone):
    spec = tiny_backbone.spec
    bs = random_bias_set(spec, "t", seed=23)
    r = client.post("/tasks", files={"file": ("x", b"definitely not safetensors")})
    assert r.status_code == 422 and r.json()["error"]["reason"] == "not_safetensors"

    wrong = random_bias_set(spec, "t", seed=23)
    wrong.meta.backbone_fingerprint = "0" * 64
    r = upload(client, wrong)
    assert r.status_code == 409 and r.json()["error"]["code"] == "fingerprint_mismatch"

    broken = random_bias_set(spec, "t", seed=23)
    key = next(k for k in broken.tensors if k.endswith("query.bias"))
    broken.tensors[key] = broken.tensors[key][:-1]
    r = upload(client, broken)
    assert r.status_code == 422 and r.json()["error"]["reason"] == "bad_shape" and key in r.json()["error"]["message"]

    r = client.post("/tasks", data={"name": "t"})  # no file field
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    assert client.get("/tasks").json() == {"tasks": [], "next_cursor": None, "catalog_tasks": 0, "unhealthy": []}  # nothing was stored
    assert upload(client, bs).status_code == 201

    metrics = client.get("/metrics").text
    assert 'bitfit_upload_rejections_total{reason="fingerprint_mismatch"} 1.0' in metrics
    assert 'bitfit_upload_rejections_total{reason="bad_shape"} 1.0' in metrics


def test_rollback_at_the_first_version_says_there_is_no_earlier_one(client, tiny_backbone):
    upload(client, random_bias_set(tiny_backbone.spec, "first", seed=1))
    r = client.post("/tasks/first/rollback")
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert "no version before its current one (1)" in message and "version 0" not in message


def test_a_new_version_with_other_labels_needs_allow_label_change(client, tiny_backbone):
    spec = tiny_backbone.spec
    upload(client, random_bias_set(spec, "topic", labels=["money", "sport"], seed=30))
    other = random_bias_set(spec, "topic", labels=["negative", "positive"], seed=31)
    for r in (replace(client, "topic", other), upload(client, other)):  # PUT, and POST to an existing name
        assert r.status_code == 409
        error = r.json()["error"]
        assert error["code"] == "label_change"
        assert (error["old_labels"], error["new_labels"]) == (["money", "sport"], ["negative", "positive"])
        assert "allow_label_change=true" in error["message"]
    reordered = random_bias_set(spec, "topic", labels=["sport", "money"], seed=32)  # the label indices move
    assert replace(client, "topic", reordered).status_code == 409
    assert client.get("/tasks/topic").json()["versions"] == [1]  # nothing was stored

    same = random_bias_set(spec, "topic", labels=["money", "sport"], seed=33)
    assert replace(client, "topic", same).status_code == 201
    files = {"file": ("set.safetensors", dumps(other))}
    r = client.put("/tasks/topic", params={"allow_label_change": "true"}, files=files)
    assert r.status_code == 201 and r.json()["labels"] == ["negative", "positive"] and r.json()["version"] == 3
    r = client.post("/tasks", params={"allow_label_change": "true"}, files={"file": ("s", dumps(reordered))})
    assert r.status_code == 201 and r.json()["version"] == 4
    # A rollback to a version with other labels is the operator's explicit choice: allowed.
    r = client.post("/tasks/topic/rollback", json={"version": 1})
    assert r.status_code == 200 and r.json()["labels"] == ["money", "sport"]


def test_tasks_and_ready_show_the_backbone_by_name_not_a_path(client, tiny_backbone, tiny_bert_dir):
    upload(client, random_bias_set(tiny_backbone.spec, "named", seed=34))
    assert client.get("/tasks/named").json()["base_model"] == tiny_bert_dir.name
    assert client.get("/readyz").json()["backbone"] == tiny_bert_dir.name
