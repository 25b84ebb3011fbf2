"""The client's retry rules, against scripted answers: what is retried, what never is, how long it waits."""

from __future__ import annotations

import httpx
import pytest
from bitfit_client import Client, NotReady, Overloaded, Retry, TransportError

OK_PREDICT = {"task": "t", "version": 1, "predictions": [{"label": "a", "score": 1.0, "truncated": False}]}
OK_TASK = {"name": "t", "version": 1, "labels": ["a"], "problem_type": "single_label_classification", "inputs": "text",
           "pooling": "cls", "bias_sites": "all", "base_model": "m", "created_at": "now", "size_bytes": 1, "sha256": "x",
           "versions": [1], "loaded": True}
OVERLOADED = (503, {"error": {"code": "overloaded", "message": "queue full"}}, {"Retry-After": "2"})
PROXY_503 = (503, None, {})


def _client(script: list, waits: list, monkeypatch) -> tuple[Client, list]:
    """A Client whose answers come from ``script`` (status, json, headers) or exceptions, in order."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        status, body, headers = step
        return httpx.Response(status, json=body, headers=headers) if body is not None else httpx.Response(status, headers=headers)

    monkeypatch.setattr("bitfit_client.client.time.sleep", waits.append)
    http = httpx.Client(base_url="http://bitfit.test", transport=httpx.MockTransport(answer))
    return Client("http://bitfit.test", http=http, retry=Retry(attempts=3, backoff_s=0.1)), seen


def test_predict_waits_retry_after_then_succeeds(monkeypatch):
    waits: list = []
    client, seen = _client([OVERLOADED, PROXY_503, (200, OK_PREDICT, {})], waits, monkeypatch)
    assert client.predict("t", "hi").version == 1
    assert len(seen) == 3 and waits[0] == 2.0 and 0.05 <= waits[1] <= 0.2


def test_upload_is_retried_only_when_the_server_did_nothing(monkeypatch):
    waits: list = []
    refused = [httpx.ConnectError("refused"), (429, {"error": {"code": "rate_limited", "message": "slow down"}}, {}),
               OVERLOADED, (201, OK_TASK, {})]
    client, seen = _client(refused, waits, monkeypatch)
    client.retry = Retry(attempts=4, backoff_s=0.1)
    assert client.upload(b"bytes").version == 1 and len(seen) == 4

    client, seen = _client([httpx.ReadTimeout("slow"), (201, OK_TASK, {})], [], monkeypatch)
    with pytest.raises(TransportError):
        client.upload(b"bytes")  # it may have landed: never sent twice
    assert len(seen) == 1

    client, seen = _client([PROXY_503, (201, OK_TASK, {})], [], monkeypatch)
    with pytest.raises(NotReady):
        client.replace("t", b"bytes")  # a 503 without the server's code: unknown whether it landed
    assert len(seen) == 1


def test_attempts_run_out_with_the_last_error(monkeypatch):
    client, seen = _client([OVERLOADED, OVERLOADED, OVERLOADED, (200, OK_PREDICT, {})], [], monkeypatch)
    with pytest.raises(Overloaded) as info:
        client.predict("t", "hi")
    assert len(seen) == 3 and info.value.status == 503


def test_reads_retry_transport_errors_and_send_the_env_key(monkeypatch):
    monkeypatch.setenv("BITFIT_API_KEY", "k" * 20)
    client, seen = _client([httpx.ReadError("reset"), (200, {"status": "ok"}, {})], [], monkeypatch)
    assert client.health() and len(seen) == 2
    assert seen[0].headers["authorization"] == "Bearer " + "k" * 20
