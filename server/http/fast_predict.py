"""The hot request's fast lane: ``POST /predict/{task}`` with one text and nothing else, in pure ASGI.

FastAPI's routing, dependencies and pydantic cost most of a predict request's event-loop
CPU (about 0.6 ms of 0.7 ms; a bare uvicorn app answers for 0.06 ms:
docs/benchmarks/request_path.md). With short texts that is as much as the forward. This
middleware sits innermost (inside the request id, access log, catch-all, replica header
and the body guard, so their work still happens) and answers exactly one shape of
request itself:

- ``POST /predict/<task>`` (no further ``/``), no query string, ``Content-Type:
  application/json``, a ``Content-Length`` of at most ``MAX_BODY`` bytes, no
  ``X-Bitfit-Min-Generation`` header;
- a body that is the JSON object ``{"inputs": "<text>"}`` and nothing else;
- on an open server (no API keys, no keys file), ready, under its work budget, with no
  OpenTelemetry tracer configured (FastAPI's server span would be missing).

Everything else (a list of inputs, options, a version, bad JSON, auth headers on a keyed
server...) goes to the app as it came, its body replayed, and is answered by the full
route. The answer is the full route's, byte for byte (tests/server/test_fast_predict.py):
the same predictor call, the same metrics, the same error table.
"""

from __future__ import annotations

import time

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bias_store.errors import BiasStoreError
from engine.errors import EngineError
from server.exceptions import ServerError
from server.http.errors import INTERNAL, _log_failure, error_response, http_error, status_of
from server.http.hf import ranked
from server.process.settings import Settings
from server.serving import spans
from server.serving.predictor import TaskInputs

MAX_BODY = 16 * 1024  # bigger bodies take the full route, with its shape check
PREFIX = "/predict/"
ROUTE = {"route": "/predict/{task}", "method": "POST", "protocol": "native"}
_JSON = b"application/json"
_REFUSED = (b"x-bitfit-min-generation", b"authorization", b"x-api-key", b"transfer-encoding")


class FastPredict:
    def __init__(self, app: ASGIApp, settings: Settings, open_server: bool) -> None:
        self.app, self.settings, self.open = app, settings, open_server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = self._task(scope)
        services = getattr(scope["app"].state, "services", None) if task else None
        if services is None or services.predictor.budget.spent or spans.tracer_configured():
            return await self.app(scope, receive, send)
        body, text = await self._read(receive, scope)
        if text is None:
            return await self.app(scope, _replay(body, receive), send)
        await self._answer(services, task, text, receive, send)

    def _task(self, scope: Scope) -> str | None:
        """The task of a request of the fast lane's shape, from its line and headers; else None."""
        if not self.open or scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
            return None
        path = scope["path"]
        task = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        if not task or "/" in task:
            return None
        length = content_type = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
            elif name in _REFUSED:
                return None
        if content_type != _JSON or length is None or not length.isdigit() or int(length) > MAX_BODY:
            return None
        return task

    @staticmethod
    async def _read(receive: Receive, scope: Scope) -> tuple[bytes, str | None]:
        """The body (through the body guard's receive: its deadline applies) and its one text, or None."""
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()  # the body guard logs and counts it, as for the full route
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body, None
        if type(parsed) is not dict or len(parsed) != 1 or type(parsed.get("inputs")) is not str or not parsed["inputs"].strip():
            return body, None
        return body, parsed["inputs"]

    async def _answer(self, services, task: str, text: str, receive: Receive, send: Send) -> None:
        started, status = time.perf_counter(), 200

        async def until_disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            (result,) = await services.predictor.predict([TaskInputs(task, [text])], until_disconnected)
            status, payload = 200, orjson.dumps(_answer_of(result))
            headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", _JSON)]
        except (EngineError, BiasStoreError, ServerError) as exc:
            entry = http_error(exc)
            if entry is INTERNAL:
                _log_failure({"method": "POST", "path": PREFIX + task}, exc)
            services.metrics.errors.labels(entry.code).inc()
            response = error_response(exc)
            status, payload = response.status_code, response.body
            headers = response.raw_headers
        except BaseException as exc:  # a bug, a device error, a cancel: the catch-all outside answers, as for the full route
            status = status_of(exc)
            raise
        finally:
            stored = services.catalog.stored
            services.metrics.observe_request([task], status, time.perf_counter() - started, lambda t: t in stored, ROUTE)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _answer_of(result) -> dict:
    """The full route's answer to ``{"inputs": text}`` (return_all_scores, no top_k, no function)."""
    predictions = []
    for p in result.predictions:
        out = {"label": p.label, "score": p.score, "scores": dict(ranked(p.scores, None)), "truncated": p.truncated}
        if p.labels is not None:
            out["labels"] = list(p.labels)
        predictions.append(out)
    return {"task": result.task, "version": result.version, "predictions": predictions}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the connection's own messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
