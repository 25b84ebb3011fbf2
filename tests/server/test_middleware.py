"""RequestGuard: the body is counted against the limit the route set, and cut off at it (pure ASGI)."""

from __future__ import annotations

import asyncio
import json

from server.http.middleware import EXCHANGE, RequestGuard
from server.process.settings import Settings


def call(limit, chunks):
    """Run one POST through the guard to an app that sets ``limit`` and reads the whole body."""
    sent, read = [], []

    async def app(scope, receive, send):
        scope[EXCHANGE].limit, scope[EXCHANGE].setting = limit, "THE_SETTING"
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            read.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": []}
    asyncio.run(RequestGuard(app, Settings())(scope, receive, send))
    return sent, b"".join(read)


def test_a_body_within_the_routes_limit_reaches_the_app():
    sent, body = call(10, [b"abc", b"def"])
    assert body == b"abcdef" and sent[0]["status"] == 200


def test_a_chunked_body_over_the_limit_is_answered_413_naming_the_setting():
    sent, body = call(4, [b"abc", b"def", b"ghi"])
    assert sent[0]["status"] == 413 and len(sent) == 2  # the app's own answer is dropped
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "limit_exceeded" and "THE_SETTING" in error["message"]
    assert body == b"abc"  # the app never saw the bytes past the limit


def test_without_a_limit_any_body_passes():
    sent, body = call(None, [b"x" * 1000] * 3)
    assert sent[0]["status"] == 200 and len(body) == 3000
