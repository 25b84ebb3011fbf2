"""Slow clients over real uvicorn: trickled headers are cut off, a trickled body gets a JSON 408."""

from __future__ import annotations

import json
import logging
import socket
import time
from urllib.parse import urlsplit

from tests.helpers import wait_until
from tests.server_support import live_server


def _trickle(url: str, data: bytes, every: float, deadline: float, head: bytes = b"") -> tuple[bytes, float]:
    """Send ``head``, then ``data`` a byte every ``every`` seconds while reading; return what came back and when."""
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=deadline) as sock:
        sock.sendall(head)
        sock.settimeout(every)
        answer = b""
        for byte in data:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed by the server
                break
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            except TimeoutError:
                pass
            except ConnectionResetError:  # closed by the server with our unread bytes: an RST
                break
            if time.monotonic() - started > deadline:
                break
        return answer, time.monotonic() - started


def test_trickled_headers_and_bodies_are_cut_off(tmp_path, tiny_backbone):
    with live_server(tmp_path / "s", tiny_backbone, header_timeout_s=1.0, request_read_timeout_s=1.0) as url:
        head = b"POST /predict/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 200
        answer, seconds = _trickle(url, head, every=0.2, deadline=10)
        assert answer == b"" and seconds < 3, (answer, seconds)  # closed without an answer, well before 40 s

        body = b'{"inputs": "' + b"x" * 200 + b'"}'
        head = b"POST /predict/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n".encode()
        # Headers at once, the body slowly. The server answers 408 and closes with the client's
        # unread bytes in its buffer, so its kernel may follow the answer with an RST, which can
        # discard the answer before this client reads it: a transport race, retried.
        for _ in range(3):
            answer, seconds = _trickle(url, body, every=0.05, deadline=10, head=head)
            assert seconds < 3, seconds
            if answer:
                break
        status, _, rest = answer.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 408"), answer[:300]
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
        assert seconds < 3


def test_a_client_hanging_up_mid_body_is_one_info_line_and_a_count(tmp_path, tiny_backbone, caplog):
    """Issue 22: each abort logged an ERROR traceback, so a predict key could flood the logs."""
    import httpx

    caplog.set_level(logging.INFO)
    with live_server(tmp_path / "s", tiny_backbone) as url:
        parts = urlsplit(url)
        for path in ("/predict/t", "/v2/models/t/infer", "/predict/t"):
            with socket.create_connection((parts.hostname, parts.port)) as sock:
                head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
                sock.sendall(head.encode() + b'{"inputs": "abc')
                time.sleep(0.2)
        assert wait_until(lambda: "bitfit_client_disconnects_total 3.0" in httpx.get(f"{url}/metrics").text, timeout=5)
    mine = [r for r in caplog.records if "disconnected before its body" in r.getMessage()]
    assert len(mine) == 3 and all(r.levelno == logging.INFO and not r.exc_info for r in mine)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_upload_over_the_limit_gets_its_413_while_still_sending(tmp_path, tiny_backbone):
    """8 MB sent at a 1 MB limit: the server answers 413 after the first MB and keeps reading
    (and dropping) the rest, so the client gets the JSON answer, not a connection reset."""
    import httpx

    with live_server(tmp_path / "s", tiny_backbone, max_upload_bytes=1 << 20) as url:
        for _ in range(3):
            r = httpx.post(f"{url}/tasks", files={"file": ("big.safetensors", b"\0" * (8 << 20))}, timeout=30)
            assert r.status_code == 413, r.text[:300]
            assert "max_upload_bytes" in r.json()["error"]["message"].lower()
        assert httpx.get(f"{url}/healthz").status_code == 200
