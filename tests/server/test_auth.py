"""Bearer-key auth: /tasks mutations need an admin key; predict optionally a predict key; probes stay open."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from server.http.auth import key_matches
from server.process import cli
from server.process.settings import Settings
from tests.helpers import random_bias_set
from tests.server_support import live_server, replace, serving, upload

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


def test_predict_keys_alone_never_open_the_mutations(tmp_path, tiny_backbone):
    """Only BITFIT_PREDICT_API_KEYS set: every mutation is refused, a predict key included."""
    bs = random_bias_set(tiny_backbone.spec, "t", seed=4)
    with serving(tmp_path / "s", tiny_backbone, predict_api_keys=[READER]) as c:
        for headers in (None, bearer(READER)):
            expected = 401 if headers is None else 403
            assert upload(c, bs, headers=headers).status_code == expected
            assert replace(c, "t", bs, headers=headers).status_code == expected
            assert c.delete("/tasks/t", headers=headers).status_code == expected
            assert c.post("/tasks/t/rollback", headers=headers).status_code == expected
        assert "BITFIT_API_KEYS is not" in upload(c, bs, headers=bearer(READER)).json()["error"]["message"]
        assert c.get("/tasks", headers=bearer(READER)).status_code == 200


def test_key_matching_and_settings():
    assert key_matches(ADMIN, [READER, ADMIN]) and not key_matches(ADMIN[:-1], [ADMIN]) and not key_matches(ADMIN, [])
    assert Settings(api_keys=f"{ADMIN}, {READER}").api_keys == [ADMIN, READER]  # as the env var gives it
    with pytest.raises(ValidationError, match="shorter than 16"):
        Settings(api_keys=["short"])
    for blank in ("", " , ,", ",", "[]", '[""]'):
        with pytest.raises(ValidationError, match="no key|empty key"):
            Settings(predict_api_keys=blank)


@pytest.mark.parametrize("value", ["", " , ,", "shortsecret-9f2c,also-short-77"])
def test_a_bad_key_variable_stops_the_start_without_echoing_it(value, monkeypatch, capsys):
    monkeypatch.setenv("BITFIT_API_KEYS", value)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "BITFIT_API_KEYS" in err
    assert "shortsecret" not in err and "also-short" not in err


def _raw_request(url: str, head: bytes, body_prefix: bytes) -> tuple[bytes, float]:
    """Send a request's head and the first bytes of its body, then read the answer (not sending the rest)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        started = time.perf_counter()
        sock.sendall(head + body_prefix)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer, time.perf_counter() - started


def test_auth_is_decided_before_the_body_is_read(tmp_path, tiny_backbone):
    """Over real uvicorn: a 17 MB upload without a key is answered 401 after 1 KB of it was sent."""
    with live_server(tmp_path / "s", tiny_backbone, api_keys=[ADMIN]) as url:
        boundary = "b0undary"
        for target, extra in ((b"POST /tasks", b"Content-Length: 17000000\r\n"),
                              (b"PUT /tasks/t", b"Transfer-Encoding: chunked\r\n"),
                              (b"POST /tasks/t/rollback", b"Content-Length: 17000000\r\n")):
            head = (target + b" HTTP/1.1\r\nHost: x\r\n" + extra
                    + f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode())
            prefix = b"400\r\n" + b"x" * 1024 if b"chunked" in extra else b"x" * 1024
            answer, seconds = _raw_request(url, head, prefix)
            assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
            assert seconds < 2.0
