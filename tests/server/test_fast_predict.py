"""The hot request's fast lane (server/http/fast_predict.py): the full route's answer, byte for byte,
and every other request handed to the full route."""

from __future__ import annotations

import httpx
import pytest

from server.http import fast_predict
from tests.helpers import random_bias_set
from tests.server_support import live_server, serving, upload


@pytest.fixture
def lane(monkeypatch):
    """Counts the requests the fast lane answered itself (no tracer configured: another test
    of this process may have set OpenTelemetry's global one, which sends every request to the
    full route, test_with_a_tracer_every_request_takes_the_full_route)."""
    monkeypatch.setattr(fast_predict.spans, "tracer_configured", lambda: False)
    answered = []
    original = fast_predict.FastPredict._answer

    async def counted(self, services, task, text, receive, send):
        answered.append(task)
        await original(self, services, task, text, receive, send)

    monkeypatch.setattr(fast_predict.FastPredict, "_answer", counted)
    return answered


def multi_label_set(spec):
    return random_bias_set(spec, "tags", ["a", "b", "c"], seed=4, problem_type="multi_label_classification")


def test_its_answers_are_the_full_routes_byte_for_byte(tmp_path, tiny_backbone, lane):
    with serving(tmp_path / "s", tiny_backbone) as client:
        assert upload(client, random_bias_set(tiny_backbone.spec, "t", ["neg", "pos", "mid"], seed=1)).status_code == 201
        for text in ["a gorgeous, witty film", "ünïcode ✓ text", "word " * 300]:  # the last one is truncated
            fast = client.post("/predict/t", json={"inputs": text})
            full = client.post("/predict/t?format=native", json={"inputs": text})  # a query string: the full route
            assert fast.status_code == full.status_code == 200
            assert fast.content == full.content and fast.headers["content-type"] == full.headers["content-type"]
        missing = client.post("/predict/nope", json={"inputs": "x"})
        assert missing.status_code == 404 and missing.content == client.post("/predict/nope?format=native", json={"inputs": "x"}).content
        too_long = client.post("/predict/t", json={"inputs": "x" * 100_000}, headers={"content-type": "application/json"})
        assert too_long.status_code == 413  # over the lane's body size: the full route's limits answer
    assert lane == ["t", "t", "t", "nope"]


def test_a_multi_label_answer_lists_its_labels_like_the_full_route(tmp_path, tiny_backbone, lane):
    with serving(tmp_path / "s", tiny_backbone) as client:
        assert upload(client, multi_label_set(tiny_backbone.spec)).status_code == 201
        fast = client.post("/predict/tags", json={"inputs": "some text"})
        assert fast.content == client.post("/predict/tags?format=native", json={"inputs": "some text"}).content
        assert "labels" in fast.json()["predictions"][0]
    assert lane == ["tags"]


@pytest.mark.parametrize("body", [
    {"inputs": ["a list", "of texts"]}, {"inputs": "x", "top_k": 1}, {"inputs": "   "}, {"inputs": 3}, {"text": "x"},
])
def test_any_other_request_is_answered_by_the_full_route(tmp_path, tiny_backbone, lane, body):
    with serving(tmp_path / "s", tiny_backbone) as client:
        assert upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1)).status_code == 201
        got = client.post("/predict/t", json=body)
        want = client.post("/predict/t?format=native", json=body)
        assert (got.status_code, got.content) == (want.status_code, want.content)
    assert lane == []


def test_with_a_tracer_every_request_takes_the_full_route(tmp_path, tiny_backbone, lane, monkeypatch):
    monkeypatch.setattr(fast_predict.spans, "tracer_configured", lambda: True)  # FastAPI's server span needs the route
    with serving(tmp_path / "s", tiny_backbone) as client:
        assert upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1)).status_code == 201
        assert client.post("/predict/t", json={"inputs": "x"}).status_code == 200
    assert lane == []


def test_malformed_json_and_a_keyed_server_take_the_full_route(tmp_path, tiny_backbone, lane):
    with serving(tmp_path / "s", tiny_backbone) as client:
        assert upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1)).status_code == 201
        bad = client.post("/predict/t", content=b'{"inputs": "x"', headers={"content-type": "application/json"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    with serving(tmp_path / "k", tiny_backbone, predict_api_keys=["k1" * 16]) as client:
        assert client.post("/predict/t", json={"inputs": "x"}).status_code == 401
    assert lane == []


def test_it_counts_each_request_once_like_the_full_route(tmp_path, tiny_backbone, lane):
    with serving(tmp_path / "s", tiny_backbone) as client:
        assert upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1)).status_code == 201
        for _ in range(3):
            assert client.post("/predict/t", json={"inputs": "x"}).status_code == 200
        client.post("/predict/nope", json={"inputs": "x"})
        metrics = client.get("/metrics").text
    counted = [line for line in metrics.splitlines() if line.startswith("bitfit_requests_total{")]
    ok = [line for line in counted if 'task="t"' in line and 'status="200"' in line]
    assert len(ok) == 1 and ok[0].endswith(" 3.0") and 'route="/predict/{task}"' in ok[0] and 'protocol="native"' in ok[0]
    assert any('status="404"' in line and line.endswith(" 1.0") for line in counted)
    assert len(lane) == 4


def test_on_a_real_uvicorn_the_answers_carry_the_request_id_and_replica(tmp_path, tiny_backbone, lane):
    with live_server(tmp_path / "s", tiny_backbone, replica_name="r1") as url, httpx.Client(base_url=url, trust_env=False) as client:
        assert client.post("/tasks", files={"file": ("s", _dumps(random_bias_set(tiny_backbone.spec, "t", seed=1)))}).status_code == 201
        r = client.post("/predict/t", json={"inputs": "x"}, headers={"x-request-id": "abc-1"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "abc-1" and r.headers["x-bitfit-replica"] == "r1"
    assert lane == ["t"]


def _dumps(bias_set) -> bytes:
    from bias_store.format import dumps

    return dumps(bias_set)
