"""No request can stall everyone: each bound over real uvicorn (the `bitfit serve` config)."""

from __future__ import annotations

import threading
import time

import httpx

from bias_store.format import dumps
from server.serving.predictor import json_string_bytes
from tests.helpers import random_bias_set
from tests.server_support import live_server, serving, upload


def _upload(http: httpx.Client, bias_set) -> None:
    r = http.post("/tasks", files={"file": ("t.safetensors", dumps(bias_set))})
    assert r.status_code == 201, r.text


def _healthz_while(http_url: str, work) -> tuple[object, float]:
    """Run ``work()`` while probing /healthz every 10 ms; return its result and the slowest probe."""
    slowest, stop = [0.0], threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=http_url, timeout=30) as probe_http:
            while not stop.is_set():
                started = time.perf_counter()
                assert probe_http.get("/healthz").status_code == 200
                slowest[0] = max(slowest[0], time.perf_counter() - started)
                time.sleep(0.01)

    thread = threading.Thread(target=probe)
    thread.start()
    time.sleep(0.1)
    try:
        return work(), slowest[0]
    finally:
        stop.set()
        thread.join()


def test_many_tiny_values_are_refused_before_parsing(tmp_path, tiny_backbone):
    with live_server(tmp_path / "s", tiny_backbone) as url, httpx.Client(base_url=url, timeout=60) as http:
        _upload(http, random_bias_set(tiny_backbone.spec, "t", seed=1))
        for body in (b'{"inputs": [' + b",".join([b"0"] * 500_000) + b"]}",  # 1 MB, 500k values
                     b'{"inputs": [' + b",".join([b'""'] * 300_000) + b"]}",
                     b'{"items": [' + b",".join([b"{}"] * 300_000) + b"]}"):
            path = "/predict" if body.startswith(b'{"items') else "/predict/t"

            def send(body=body, path=path):
                started = time.perf_counter()
                r = http.post(path, content=body, headers={"content-type": "application/json"})
                return r, time.perf_counter() - started

            (r, seconds), slowest_probe = _healthz_while(url, send)
            assert r.status_code == 413 and "JSON" in r.json()["error"]["message"], r.text[:300]
            assert seconds < 2.0 and slowest_probe < 0.5, (seconds, slowest_probe)


def test_a_spent_budget_sheds_at_once_and_work_is_admitted_again(tmp_path, tiny_backbone):
    # The first request costs 128 tokens (the tiny backbone's max length): more than the whole
    # budget, so it runs alone, and waits 1.5 s in the queue for company.
    settings = dict(max_inflight_tokens=100, max_wait_ms=1500, max_batch_rows=64)
    with live_server(tmp_path / "s", tiny_backbone, **settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        _upload(http, random_bias_set(tiny_backbone.spec, "t", seed=2))
        first = threading.Thread(target=lambda: http.post("/predict/t", json={"inputs": ["x" * 150]}))
        first.start()
        time.sleep(0.3)  # admitted, waiting in the batch queue
        for body in ({"inputs": ["y" * 150]}, {"inputs": "short"}):  # the budget is spent: both shed
            started = time.perf_counter()
            r = http.post("/predict/t", json=body)
            assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded", r.text
            assert r.headers["retry-after"] == "1" and "BITFIT_MAX_INFLIGHT_TOKENS" in r.json()["error"]["message"]
            assert time.perf_counter() - started < 0.1 * 5  # well within the first request's wait
        first.join()
        assert http.post("/predict/t", json={"inputs": ["z" * 150]}).status_code == 200  # released
        assert 'bitfit_rejected_requests_total{reason="budget"} 2.0' in http.get("/metrics").text


def test_text_the_tokenizer_cannot_take_and_huge_answers_are_4xx(tmp_path, tiny_backbone):
    labels = [f"{i:03d}" + "l" * 96 for i in range(1000)]  # the most the format allows
    with live_server(tmp_path / "s", tiny_backbone, max_response_bytes=1_000_000) as url, \
            httpx.Client(base_url=url, timeout=60) as http:
        _upload(http, random_bias_set(tiny_backbone.spec, "t", seed=3))
        _upload(http, random_bias_set(tiny_backbone.spec, "wide", labels=labels, seed=4))
        raw = b'{"inputs": ["fine", "bad \\ud800 text"]}'
        r = http.post("/predict/t", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "inputs[1]" in r.json()["error"]["message"] and "surrogate" in r.text
        raw = b'{"items": [{"task": "t\\udfff", "inputs": "x"}]}'
        r = http.post("/predict", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "items" in r.json()["error"]["message"] and "task" in r.json()["error"]["message"]
        assert http.post("/predict/t", json={"inputs": "still serving"}).status_code == 200  # connection kept
        r = http.post("/predict/wide", json={"inputs": ["x"] * 64})
        assert r.status_code == 413 and "top_k" in r.json()["error"]["message"]
        r = http.post("/predict/wide", json={"inputs": ["x"] * 64, "top_k": 3})
        assert r.status_code == 200 and len(r.json()["predictions"][0]["scores"]) == 3


def test_metric_label_slots_are_freed_on_delete(tmp_path, tiny_backbone):
    with live_server(tmp_path / "s", tiny_backbone, metrics_max_tasks=1) as url, httpx.Client(base_url=url, timeout=60) as http:
        for name in ("first", "second"):
            _upload(http, random_bias_set(tiny_backbone.spec, name, seed=5))
        http.post("/predict/first", json={"inputs": "x"})
        assert 'task="first"' in http.get("/metrics").text
        assert http.delete("/tasks/first").status_code == 204
        http.post("/predict/second", json={"inputs": "x"})
        metrics = http.get("/metrics").text
        assert 'task="first"' not in metrics and 'task="second"' in metrics and 'task="other"' not in metrics


def test_a_request_past_the_graceful_timeout_gets_a_json_503(tmp_path, tiny_backbone):
    answers = []
    with live_server(tmp_path / "s", tiny_backbone, graceful_timeout_s=0.5, max_wait_ms=5000, max_batch_rows=64) as url:
        with httpx.Client(base_url=url, timeout=60) as http:
            _upload(http, random_bias_set(tiny_backbone.spec, "t", seed=6))
        thread = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/predict/t", json={"inputs": "x"}, timeout=30)))
        thread.start()
        time.sleep(0.5)  # in flight (waiting 5 s for company) when the server is told to stop
    thread.join()
    (r,) = answers
    assert r.status_code == 503 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "not_ready" and "shutting down" in r.json()["error"]["message"]


def test_the_answer_limit_counts_encoded_bytes_not_characters(tmp_path, tiny_backbone):
    """A control character is 6 bytes of JSON (``\\u0001``): labels full of them made a small
    request's answer 4.4x the limit (issue 22, bug 5)."""
    labels = [f"{i:02d}" + "\x01" * 90 for i in range(50)]
    with serving(tmp_path / "s", tiny_backbone, max_response_bytes=100_000) as c:
        assert upload(c, random_bias_set(tiny_backbone.spec, "ctl", labels=labels, seed=5)).status_code == 201
        r = c.post("/predict/ctl", json={"inputs": ["x"] * 8})
        assert r.status_code == 413 and "top_k" in r.json()["error"]["message"]  # ~230 KB of JSON
        r = c.post("/predict/ctl", json={"inputs": ["x"] * 3})
        assert r.status_code == 200 and len(r.content) <= 100_000
        assert json_string_bytes("\x01") == 8 and json_string_bytes("plain") == 7 and json_string_bytes("é") == 8
