"""The Open Inference Protocol v2, spoken to by the real tritonclient[http] against a real uvicorn."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from bias_store.format import dumps
from engine import Engine
from tests.helpers import random_bias_set
from tests.server_support import TEXTS, live_server

LABELS = ["anger", "joy", "fear"]
PAIRS = [("A man plays a guitar.", "Someone makes music."), ("It rains.", "The sun is out.")]


def _sets(spec):
    return {
        "mood": random_bias_set(spec, "mood", labels=LABELS, seed=3),
        "nli": random_bias_set(spec, "nli", labels=["entail", "contradict"], inputs="text_pair", seed=4),
    }


@pytest.fixture(scope="module")
def oip_server(tmp_path_factory, tiny_backbone):
    store, folder = tmp_path_factory.mktemp("oip-store"), tmp_path_factory.mktemp("oip-preload")
    paths = []
    for name, bias_set in _sets(tiny_backbone.spec).items():
        paths.append(folder / f"{name}.safetensors")
        paths[-1].write_bytes(dumps(bias_set))
    with live_server(store, tiny_backbone, preload=paths, max_wait_ms=100) as url:
        yield url


@pytest.fixture(scope="module")
def reference(tiny_backbone):
    engine = Engine(tiny_backbone)
    for bias_set in _sets(tiny_backbone.spec).values():
        engine.register(bias_set)
    return engine


@pytest.fixture
def client(oip_server):
    client = triton.InferenceServerClient(url=oip_server.removeprefix("http://"))
    yield client
    client.close()


def _text_input(name: str, values: list[str], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array(values, dtype=np.object_), binary_data=binary)
    return tensor


def test_server_and_model_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("mood") and not client.is_model_ready("nope")
    meta = client.get_model_metadata("mood")
    assert meta["versions"] == ["1"] and [t["name"] for t in meta["inputs"]] == ["text"]
    assert {t["name"]: t["shape"] for t in meta["outputs"]} == {"label": [-1], "scores": [-1, 3]}
    assert [t["name"] for t in client.get_model_metadata("nli")["inputs"]] == ["text", "text_pair"]
    index = client.get_model_repository_index()
    assert {(m["name"], m["version"], m["state"]) for m in index} == {("mood", "1", "READY"), ("nli", "1", "READY")}


@pytest.mark.parametrize("binary", [True, False])
def test_infer_equals_the_engine(client, reference, binary):
    result = client.infer("mood", [_text_input("text", TEXTS, binary)])  # outputs: binary, as Triton's default
    expected = reference.predict("mood", TEXTS)
    assert [x.decode() for x in result.as_numpy("label")] == [p.label for p in expected]
    np.testing.assert_allclose(result.as_numpy("scores"), [[p.scores[k] for k in LABELS] for p in expected], atol=1e-5)

    pair = client.infer(
        "nli", [_text_input("text", [a for a, _ in PAIRS], binary), _text_input("text_pair", [b for _, b in PAIRS], binary)],
        outputs=[triton.InferRequestedOutput("label", binary_data=binary)], request_id="r-7",
    )
    labels = [x.decode() if binary else x for x in pair.as_numpy("label")]  # JSON BYTES come back as str
    assert labels == [p.label for p in reference.predict("nli", PAIRS)]
    assert pair.as_numpy("scores") is None and pair.get_response()["id"] == "r-7"


def test_versions_and_errors(client, oip_server, tiny_backbone):
    newer = random_bias_set(tiny_backbone.spec, "mood", labels=LABELS, seed=9)
    assert httpx.put(f"{oip_server}/tasks/mood", files={"file": ("m.safetensors", dumps(newer))}).status_code == 201
    try:
        old = client.infer("mood", [_text_input("text", TEXTS[:1], True)], model_version="1")
        new = client.infer("mood", [_text_input("text", TEXTS[:1], True)])
        assert old.get_response()["model_version"] == "1" and new.get_response()["model_version"] == "2"
        assert not np.allclose(old.as_numpy("scores"), new.as_numpy("scores"))
        assert client.is_model_ready("mood", model_version="1") and not client.is_model_ready("mood", model_version="5")
        with pytest.raises(InferenceServerException) as info:
            client.infer("mood", [_text_input("text", TEXTS[:1], True)], model_version="5")
        assert info.value.status() == "404" and "available versions: [1, 2]" in str(info.value)
    finally:
        assert httpx.post(f"{oip_server}/tasks/mood/rollback", json={"version": 1}).status_code == 200
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", [_text_input("text", ["hi"], True)])
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException) as info:
        client.infer("mood", [_text_input("prompt", ["hi"], False)])
    assert info.value.status() == "400" and "'prompt'" in str(info.value)  # Triton's status


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["one"]}]},
        {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}]},
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}], "outputs": [{"name": "logits"}]},
        {"inputs": []},
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 99}}]},
        # lax tensors (issue 22): coerced shapes, a repeated input, nested data
        {"inputs": [{"name": "text", "shape": ["1"], "datatype": "BYTES", "data": ["a"]}]},
        {"inputs": [{"name": "text", "shape": [1.0], "datatype": "BYTES", "data": ["a"]}]},
        {"inputs": [{"name": "text", "shape": [-1], "datatype": "BYTES", "data": []}]},
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]},
                    {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["b"]}]},
        {"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": [["a"]]}]},
    ],
)
def test_bad_infer_requests_are_400_as_on_triton(oip_server, body):
    response = httpx.post(f"{oip_server}/v2/models/mood/infer", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] in ("invalid_input", "validation_error") and response.json()["error"]  # OIP: error is the message


def test_oip_and_native_requests_share_batches(oip_server):
    """With a 100 ms batching window, concurrent OIP and native requests land in one batch."""
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    calls = [lambda: httpx.post(f"{oip_server}/v2/models/mood/infer", json=body, timeout=30),
             lambda: httpx.post(f"{oip_server}/predict/nli", json={"inputs": [{"text": "a", "text_pair": "b"}]}, timeout=30)]
    before = _mixed_batches(oip_server)
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _mixed_batches(oip_server) > before


def _mixed_batches(url: str) -> float:
    """Batches that held two or more tasks, from /metrics."""
    text = httpx.get(f"{url}/metrics").text
    count = le1 = 0.0
    for line in text.splitlines():
        if line.startswith("bitfit_batch_tasks_count"):
            count = float(line.split()[-1])
        if line.startswith('bitfit_batch_tasks_bucket{le="1.0"}'):
            le1 = float(line.split()[-1])
    return count - le1


def test_infer_body_has_the_json_limit(tmp_path, tiny_backbone):
    from tests.server_support import serving

    with serving(tmp_path / "store", tiny_backbone, max_inputs_per_request=1, max_input_chars=10) as client:
        big = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["' + b"x" * (2 << 20) + b'"]}]}'
        response = client.post("/v2/models/mood/infer", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "limit_exceeded" and "the input limits" in response.json()["error"]


def test_model_config_and_inference_statistics(client):
    """What perf_analyzer and model_analyzer read before they start."""
    config = client.get_model_config("nli")
    assert [t["name"] for t in config["input"]] == ["text", "text_pair"] and config["max_batch_size"] > 0
    assert [(t["name"], t["dims"]) for t in config["output"]] == [("label", [1]), ("scores", [2])]
    before = client.get_inference_statistics("mood")["model_stats"][0]["inference_stats"]["success"]["count"]
    client.infer("mood", [_text_input("text", TEXTS[:2], True)])
    (stats,) = client.get_inference_statistics("mood")["model_stats"]
    assert stats["name"] == "mood" and stats["inference_stats"]["success"]["count"] == before + 1
    assert stats["inference_stats"]["success"]["ns"] > 0
    assert {s["name"] for s in client.get_inference_statistics()["model_stats"]} == {"mood", "nli"}
    with pytest.raises(InferenceServerException) as info:
        client.get_model_config("nope")
    assert info.value.status() == "404"


def test_model_control_points_to_tasks(client):
    for call in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException) as info:
            call("mood")
        assert info.value.status() == "400" and "model control is not supported: use" in str(info.value)


def test_with_keys_readiness_agrees_and_a_401_is_oip_shaped(tmp_path, tiny_backbone):
    reader = "r" * 32
    with live_server(tmp_path / "s", tiny_backbone, predict_api_keys=[reader]) as url:
        keyless = triton.InferenceServerClient(url=url.removeprefix("http://"))
        keyed = triton.InferenceServerClient(url=url.removeprefix("http://"))
        headers = {"Authorization": f"Bearer {reader}"}
        assert keyless.is_server_live()
        assert not keyless.is_server_ready() and not keyless.is_model_ready("mood")
        assert keyed.is_server_ready(headers=headers)
        answer = httpx.get(f"{url}/v2/models/mood")
        assert answer.status_code == 401 and isinstance(answer.json()["error"], str)
        with pytest.raises(InferenceServerException) as info:
            keyless.get_model_metadata("mood")
        assert info.value.status() == "401"
def test_v2_error_answers_match_the_openapi_document(oip_server):
    """Errors on /v2 are the protocol's ``{"error": "<message>", "code"}``, and the document says so."""
    document = httpx.get(f"{oip_server}/openapi.json").json()
    components = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        if not path.startswith("/v2"):
            continue
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                ref = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                properties = components[ref]["properties"]
                assert properties["error"]["type"] == "string" and "code" in properties, (path, status, ref)
    body = httpx.get(f"{oip_server}/v2/models/nope").json()
    assert isinstance(body["error"], str) and body["code"] == "task_not_found"
