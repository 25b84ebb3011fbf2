"""The REST API through a TestClient on the tiny backbone: predict, /tasks, health, errors, limits."""

from __future__ import annotations

import pytest
import torch

from bias_store.format import dumps
from engine import Engine
from server.http.schemas import MultiPredictResponse, PredictResponse
from tests.helpers import random_bias_set
from tests.server_support import PREDICTS, TEXTS, replace, serving, upload


def engine_scores(backbone, bias_set, texts) -> list[dict[str, float]]:
    """What the engine alone answers for ``texts`` (the reference for the HTTP answers)."""
    engine = Engine(backbone)
    engine.register(bias_set)
    return [p.scores for p in engine.predict(bias_set.meta.task, texts)]


def assert_scores_close(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        torch.testing.assert_close(torch.tensor([g[k] for k in w]), torch.tensor(list(w.values())), atol=1e-5, rtol=0)


# -- predict ------------------------------------------------------------------------------
def test_predict_matches_engine_for_text_list_and_single(client, tiny_backbone):
    bs = random_bias_set(tiny_backbone.spec, "sent", seed=1)
    assert upload(client, bs).status_code == 201
    r = client.post("/predict/sent", json={"inputs": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "sent" and body["version"] == 1 and len(body["predictions"]) == len(TEXTS)
    want = engine_scores(tiny_backbone, bs, TEXTS)
    assert_scores_close([p["scores"] for p in body["predictions"]], want)
    for p, w in zip(body["predictions"], want):
        assert p["label"] == max(w, key=w.get) and p["score"] == pytest.approx(max(w.values()), abs=1e-5)
        assert p["truncated"] is False

    single = client.post("/predict/sent", json={"inputs": TEXTS[0]}).json()
    assert len(single["predictions"]) == 1
    assert_scores_close([single["predictions"][0]["scores"]], want[:1])


def test_predict_pairs_top_k_and_all_scores(client, tiny_backbone):
    labels = ["a", "b", "c", "d"]
    assert upload(client, random_bias_set(tiny_backbone.spec, "nli", labels, seed=2, inputs="text_pair")).status_code == 201
    pairs = [{"text": "a man plays guitar", "text_pair": "someone makes music"}]
    r = client.post("/predict/nli", json={"inputs": pairs, "top_k": 2})
    assert r.status_code == 200, r.text
    scores = r.json()["predictions"][0]["scores"]
    assert len(scores) == 2 and list(scores.values()) == sorted(scores.values(), reverse=True)
    assert next(iter(scores)) == r.json()["predictions"][0]["label"]
    bare = client.post("/predict/nli", json={"inputs": pairs, "return_all_scores": False}).json()
    assert "scores" not in bare["predictions"][0]
    full = client.post("/predict/nli", json={"inputs": pairs}).json()
    assert set(full["predictions"][0]["scores"]) == set(labels)
    for body in (r.json(), bare, full):
        _assert_documented_shape(body, PredictResponse)
    # a single text sent to a pair task
    r = client.post("/predict/nli", json={"inputs": "just one text"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    assert "text pairs" in r.json()["error"]["message"]


def _assert_documented_shape(body: dict, model) -> None:
    """The predict routes answer with orjson bytes, bypassing response_model: the bytes must
    still be exactly what the documented model would produce (None fields left out)."""
    assert model.model_validate(body).model_dump(exclude_none=True) == body


def test_long_input_is_truncated_and_flagged(client, tiny_backbone):
    upload(client, random_bias_set(tiny_backbone.spec, "t", seed=3))
    long_text = " ".join(["word"] * 190)  # 190 tokens > the tiny backbone's 128 positions
    r = client.post("/predict/t", json={"inputs": ["short", "word " * 39]})
    assert r.status_code == 200
    assert [p["truncated"] for p in r.json()["predictions"]] == [False, False]
    # long_text is over this client's 200-character limit: a second app on the same store.
    with serving(client.app.state.settings.store, tiny_backbone, max_input_chars=10_000) as big:
        r = big.post("/predict/t", json={"inputs": ["short", long_text]})
        assert r.status_code == 200, r.text
        assert [p["truncated"] for p in r.json()["predictions"]] == [False, True]


def test_multi_task_predict_answers_items_in_order(client, tiny_backbone):
    sets = {n: random_bias_set(tiny_backbone.spec, n, seed=10 + i) for i, n in enumerate(["x", "y"])}
    for bs in sets.values():
        upload(client, bs)
    items = [{"task": "y", "inputs": TEXTS[:2]}, {"task": "x", "inputs": TEXTS[2]}, {"task": "y", "inputs": [TEXTS[3]], "top_k": 1}]
    r = client.post("/predict", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [res["task"] for res in results] == ["y", "x", "y"]
    assert_scores_close([p["scores"] for p in results[0]["predictions"]], engine_scores(tiny_backbone, sets["y"], TEXTS[:2]))
    assert_scores_close([p["scores"] for p in results[1]["predictions"]], engine_scores(tiny_backbone, sets["x"], TEXTS[2:3]))
    assert len(results[2]["predictions"][0]["scores"]) == 1
    _assert_documented_shape(r.json(), MultiPredictResponse)
    bad = client.post("/predict", json={"items": [{"task": "x", "inputs": "ok"}, {"task": "nope", "inputs": "a"}]})
    assert bad.status_code == 404 and "x" in bad.json()["error"]["message"]
    empty = client.post("/predict", json={"items": [{"task": "x", "inputs": "ok"}, {"task": "y", "inputs": ["  "]}]})
    assert empty.status_code == 422 and empty.json()["error"]["message"].startswith("items[1].inputs[0]")


def test_curl_style_form_content_type_is_read_as_json(client, tiny_backbone):
    upload(client, random_bias_set(tiny_backbone.spec, "t", seed=4))
    r = client.post("/predict/t", content=b'{"inputs": "a gorgeous, witty film"}',
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    replace(client, "t", random_bias_set(tiny_backbone.spec, "t", seed=5))
    r = client.post("/tasks/t/rollback", content=b'{"version": 1}')  # curl -d without a content type
    assert r.status_code == 200 and r.json()["version"] == 1


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "validation_error"),
        (b'{"inputs": 5}', "validation_error"),
        (b'{"inputs": []}', "invalid_input"),
        (b'{"inputs": [""]}', "invalid_input"),
        (b'{"inputs": [{"text": "a"}]}', "validation_error"),
        (b'{"inputs": "a", "top_k": 0}', "validation_error"),
        (b'{"inputs": "a", "extra": 1}', "validation_error"),
        (b"[]", "validation_error"),
        (b"", "validation_error"),
    ],
)
def test_bad_predict_bodies_are_422_with_error_shape(client, tiny_backbone, body, code):
    upload(client, random_bias_set(tiny_backbone.spec, "t", seed=5))
    r = client.post("/predict/t", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_unknown_task_is_404_with_hint(client, tiny_backbone):
    upload(client, random_bias_set(tiny_backbone.spec, "sentiment", seed=6))
    r = client.post("/predict/sentimnt", json={"inputs": "x"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "task_not_found" and "sentiment" in err["message"] and err["known_tasks"] == ["sentiment"]
    assert client.get("/tasks/nope").status_code == 404
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.delete("/healthz")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_limits_are_named(client, tiny_backbone):
    upload(client, random_bias_set(tiny_backbone.spec, "t", seed=7))
    r = client.post("/predict/t", json={"inputs": ["x"] * 9})
    assert r.status_code == 413 and "BITFIT_MAX_INPUTS_PER_REQUEST" in r.json()["error"]["message"]
    r = client.post("/predict", json={"items": [{"task": "t", "inputs": ["x"] * 5}] * 2})
    assert r.status_code == 413 and "limit is 8" in r.json()["error"]["message"]
    r = client.post("/predict/t", json={"inputs": ["ok", "y" * 201]})
    assert r.status_code == 413
    assert "inputs[1]" in r.json()["error"]["message"] and "BITFIT_MAX_INPUT_CHARS" in r.json()["error"]["message"]


def test_upload_size_limit_is_413(tmp_path, tiny_backbone):
    bs = random_bias_set(tiny_backbone.spec, "t", seed=8)
    size = len(dumps(bs))
    with serving(tmp_path / "s", tiny_backbone, max_upload_bytes=size - 1) as c:
        r = upload(c, bs)
        assert r.status_code == 413
        assert "BITFIT_MAX_UPLOAD_BYTES" in r.json()["error"]["message"] and r.json()["error"]["reason"] == "too_large"
        # Far over the limit: refused from Content-Length, before the body is parsed.
        r = c.post("/tasks", files={"file": ("big", b"\0" * (size + (2 << 20)))})
        assert r.status_code == 413 and r.json()["error"]["code"] == "limit_exceeded"
        # No Content-Length (chunked): refused once the stream passes the limit.
        chunks = (b"\0" * (1 << 16) for _ in range(64))  # 4 MiB, far over size + 1 MiB slack
        r = c.post("/tasks", content=chunks, headers={"content-type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413 and "BITFIT_MAX_UPLOAD_BYTES" in r.json()["error"]["message"]


def test_a_chunked_request_within_the_limits_is_served(client, tiny_backbone):
    upload(client, random_bias_set(tiny_backbone.spec, "t", seed=9))
    body = b'{"inputs": ["a gorgeous, witty film", "dull"]}'
    chunks = (body[i : i + 7] for i in range(0, len(body), 7))
    r = client.post("/predict/t", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2


# -- health, metrics, OpenAPI ------------------------------------------------------------
def test_health_and_ready(client, tiny_backbone):
    assert client.get("/healthz").json() == {"status": "ok"}
    upload(client, random_bias_set(tiny_backbone.spec, "t", seed=24))
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["tasks"] == 1
    assert ready["fingerprint"] == tiny_backbone.spec.fingerprint and ready["device"] == "cpu" and ready["dtype"] == "float32"


def test_metrics_cover_requests_batches_and_cap_task_labels(tmp_path, tiny_backbone):
    with serving(tmp_path / "s", tiny_backbone, metrics_max_tasks=2) as c:
        for i in range(4):
            upload(c, random_bias_set(tiny_backbone.spec, f"t{i}", seed=30 + i))
        for i in range(4):
            assert c.post(f"/predict/t{i}", json={"inputs": ["a", "b"]}).status_code == 200
        c.post("/predict/ghost", json={"inputs": "a"})
        text = c.get("/metrics").text
    assert PREDICTS + 'status="200",task="t0"} 1.0' in text
    assert PREDICTS + 'status="200",task="t1"} 1.0' in text
    assert PREDICTS + 'status="200",task="other"} 2.0' in text  # t2, t3 beyond the cap
    assert PREDICTS + 'status="404",task="unknown"} 1.0' in text
    assert 'task="t2"' not in text and 'task="ghost"' not in text
    for name in ("bitfit_request_latency_seconds_bucket", "bitfit_queue_wait_seconds_count", "bitfit_inference_seconds_count",
                 "bitfit_batch_rows_count", "bitfit_batch_tasks_count", "bitfit_queue_depth_rows", "bitfit_upload_seconds_count",
                 "bitfit_validation_seconds_count", "bitfit_batch_forwards_count", "bitfit_batch_padding_ratio_count"):
        assert name in text, name
    assert "bitfit_tasks_loaded 4.0" in text


def test_openapi_is_complete_with_examples(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {"/predict/{task}", "/predict", "/tasks", "/tasks/{task}", "/tasks/{task}/rollback", "/healthz", "/readyz", "/metrics"}
    assert expected <= set(paths)
    assert {"post", "put", "get", "delete"} >= set(paths["/tasks/{task}"]) and "put" in paths["/tasks/{task}"]
    schemas = spec["components"]["schemas"]
    assert schemas["PredictRequest"]["examples"] and schemas["PredictResponse"]["examples"]
    assert "404" in paths["/predict/{task}"]["post"]["responses"]
    assert "409" in paths["/tasks"]["post"]["responses"]


def test_operations_doc_lists_every_setting():
    from pathlib import Path

    from server.process.settings import Settings

    doc = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    missing = [f"BITFIT_{name.upper()}" for name in Settings.model_fields if f"`BITFIT_{name.upper()}`" not in doc]
    assert not missing, f"docs/OPERATIONS.md lacks {missing}"


def test_a_full_queue_is_503_with_retry_after(client, tiny_backbone):
    from server.exceptions import Overloaded

    upload(client, random_bias_set(tiny_backbone.spec, "t", seed=40))

    class FullBatcher:
        queued_rows = 1024

        async def encode(self, handle, inputs):
            return [object() for _ in inputs]

        async def submit(self, items, disconnected=None):
            raise Overloaded("the batch queue is full", {"Retry-After": "7"})

    predictor = client.app.state.services.predictor
    real, predictor.batcher = predictor.batcher, FullBatcher()
    try:
        r = client.post("/predict/t", json={"inputs": "x"})
    finally:
        predictor.batcher = real
    assert r.status_code == 503 and r.headers["retry-after"] == "7" and r.json()["error"]["code"] == "overloaded"
    assert PREDICTS + 'status="503",task="t"} 1.0' in client.get("/metrics").text
