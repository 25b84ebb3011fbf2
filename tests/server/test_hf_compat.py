"""The Hugging Face text-classification protocol, spoken to by the real huggingface_hub client."""

from __future__ import annotations

import math

import httpx
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from bias_store.format import dumps
from engine import Engine
from tests.helpers import random_bias_set
from tests.server_support import TEXTS, live_server

LABELS = ["anger", "joy", "fear"]


@pytest.fixture(autouse=True)
def hub_client_may_reach_localhost(monkeypatch):
    """conftest sets HF_HUB_OFFLINE (nothing may reach the Hub), which also blocks the client's
    requests to our own 127.0.0.1 server; the Hub stays unreachable all the same."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory, tiny_backbone):
    store = tmp_path_factory.mktemp("hf-store")
    preload = tmp_path_factory.mktemp("hf-preload") / "mood.safetensors"
    preload.write_bytes(dumps(random_bias_set(tiny_backbone.spec, "mood", labels=LABELS, seed=3)))
    with live_server(store, tiny_backbone, preload=[preload], max_wait_ms=1) as url:
        yield url


@pytest.fixture(scope="module")
def reference(tiny_backbone):
    """The engine alone on the same bias set: what every answer must equal."""
    engine = Engine(tiny_backbone)
    engine.register(random_bias_set(tiny_backbone.spec, "mood", labels=LABELS, seed=3))
    return {text: engine.predict("mood", [text])[0] for text in TEXTS}


def test_inference_client_text_classification_unchanged(hf_server, reference):
    client = InferenceClient(base_url=f"{hf_server}/predict/mood?format=hf")
    for text in TEXTS:
        out = client.text_classification(text)
        expected = sorted(reference[text].scores.items(), key=lambda kv: -kv[1])
        assert [e.label for e in out] == [label for label, _ in expected]
        assert [e.score for e in out] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_inference_client_at_the_inference_api_path(hf_server, reference):
    """The URL a TEI or Inference API user types: {base}/models/{task}, no query string."""
    client = InferenceClient(model=f"{hf_server}/models/mood")
    text = TEXTS[0]
    out = client.text_classification(text)
    expected = sorted(reference[text].scores.items(), key=lambda kv: -kv[1])
    assert [(e.label, round(e.score, 5)) for e in out] == [(label, round(score, 5)) for label, score in expected]
    (best,) = client.text_classification(text, top_k=1)
    assert best.label == reference[text].label
    with pytest.raises(HfHubHTTPError) as info:
        InferenceClient(model=f"{hf_server}/models/nope").text_classification(text)
    assert info.value.response.status_code == 404


def test_inference_client_parameters(hf_server, reference):
    client = InferenceClient(base_url=f"{hf_server}/predict/mood?format=hf")
    text = TEXTS[0]
    (best,) = client.text_classification(text, top_k=1)
    assert best.label == reference[text].label
    sig = client.text_classification(text, function_to_apply="sigmoid")
    logits = dict(zip(LABELS, reference[text].logits))
    assert {e.label: e.score for e in sig} == pytest.approx({k: 1 / (1 + math.exp(-v)) for k, v in logits.items()}, abs=1e-5)
    raw = client.text_classification(text, function_to_apply="none", top_k=2)
    assert [e.score for e in raw] == pytest.approx(sorted(logits.values(), reverse=True)[:2], abs=1e-5)


def test_inference_client_unknown_task_is_a_404(hf_server):
    with pytest.raises(HfHubHTTPError) as info:
        InferenceClient(base_url=f"{hf_server}/predict/nope?format=hf").text_classification("hi")
    assert info.value.response.status_code == 404


def test_hf_request_native_answer_batch_and_truncation(hf_server, reference):
    body = {"inputs": TEXTS[:2], "parameters": {"top_k": 2, "function_to_apply": "softmax"}}
    native = httpx.post(f"{hf_server}/predict/mood", json=body).json()
    assert [p["label"] for p in native["predictions"]] == [reference[t].label for t in TEXTS[:2]]
    assert all(len(p["scores"]) == 2 for p in native["predictions"])
    hf = httpx.post(f"{hf_server}/predict/mood?format=hf", json=body).json()
    assert [[e["label"] for e in row] for row in hf] == [list(p["scores"]) for p in native["predictions"]]

    long_text = "word " * 400  # past the tiny backbone's 128 positions
    cut = httpx.post(f"{hf_server}/predict/mood?format=hf", json={"inputs": long_text, "parameters": {}})
    assert cut.status_code == 200
    refused = httpx.post(f"{hf_server}/predict/mood?format=hf", json={"inputs": [TEXTS[0], long_text], "parameters": {"truncation": False}})
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith("inputs[1]: ")


@pytest.mark.parametrize(
    "query, body",
    [
        ("?format=xml", {"inputs": "hi"}),
        ("?fromat=hf", {"inputs": "hi"}),
        ("", {"inputs": "hi", "parameters": {"function_to_apply": "relu"}}),
        ("", {"inputs": "hi", "parameters": {"top_k": 0}}),
        ("", {"inputs": "hi", "parameters": {"temperature": 1.0}}),
    ],
)
def test_bad_hf_options_are_422_naming_the_field(hf_server, query, body):
    response = httpx.post(f"{hf_server}/predict/mood{query}", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(word in error["message"] for word in ("format", "fromat", "function_to_apply", "top_k", "temperature"))
