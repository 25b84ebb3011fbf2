"""The client against a real, tiny, misbehaving HTTP server: deadlines, answers it cannot
read, no second upload after not_ready, request ids on every error."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bitfit_client import AsyncClient, Client, MalformedAnswer, NotReady, Retry, TaskNotFound, Timeout, TransportError

Script = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def scripted(script: Script) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP/1.1 server on loopback answering every request with ``script``; yields (url, request lines)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            seen.append(f"{self.command} {self.path} {self.headers.get('x-request-id')}")
            self.rfile.read(int(self.headers.get("content-length") or 0))
            script(self)

        do_GET = do_POST = do_PUT = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _answer(status: int, body: bytes, headers: dict | None = None) -> Script:
    def script(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return script


def _trickle(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte of a 40-byte body every 0.3 s: each read is quick, the whole is not."""
    handler.send_response(200)
    handler.send_header("Content-Length", "40")
    handler.end_headers()
    try:
        for _ in range(40):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.3)
    except OSError:
        pass  # the client gave up


def test_a_trickling_server_cannot_hold_a_call_past_its_timeout():
    with scripted(_trickle) as (url, seen), Client(url, timeout=1.5, retry=Retry(attempts=4, backoff_s=0.01)) as client:
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            client.health()
        assert time.monotonic() - started < 3.0
    assert isinstance(info.value, TransportError) and info.value.request_id
    started = time.monotonic()
    with scripted(_trickle) as (url, _), Client(url, timeout=30) as client, pytest.raises(Timeout):
        client.predict("t", "hi", timeout=1.0)  # a per-call timeout
    assert time.monotonic() - started < 2.5


def test_the_async_client_has_the_same_deadline():
    async def main() -> None:
        with scripted(_trickle) as (url, _):
            async with AsyncClient(url, timeout=1.5) as client:
                started = time.monotonic()
                with pytest.raises(Timeout):
                    await client.health()
                assert time.monotonic() - started < 3.0

    asyncio.run(main())


def test_an_upload_is_not_sent_again_after_not_ready():
    """not_ready is also what requests still running at the graceful timeout get: the upload may be stored."""
    body = json.dumps({"error": {"code": "not_ready", "message": "shutting down"}}).encode()
    with scripted(_answer(503, body, {"Retry-After": "0"})) as (url, seen), Client(url) as client:
        with pytest.raises(NotReady):
            client.upload(b"bytes")
        assert len(seen) == 1
        with pytest.raises(NotReady):
            client.health()  # a read is retried
        assert len(seen) == 1 + client.retry.attempts


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b'{"unexpected": true}', b'{"task": "t"}'])
def test_an_answer_not_of_the_api_is_a_bitfit_error(body):
    with scripted(_answer(200, body)) as (url, _), Client(url) as client:
        with pytest.raises(MalformedAnswer) as info:
            client.predict("t", "hi")
    assert info.value.status == 200 and info.value.request_id


def test_errors_carry_the_request_id_sent_and_logged():
    body = json.dumps({"error": {"code": "task_not_found", "message": "no task 't'", "known_tasks": []}}).encode()
    with scripted(_answer(404, body)) as (url, seen), Client(url) as client:
        with pytest.raises(TaskNotFound) as info:
            client.predict("t", "hi")
    (line,) = seen
    assert line.endswith(info.value.request_id) and info.value.request_id in str(info.value)
