"""The ceiling behind HTTP: the plain loop (bench/plain_ceiling.py) served by a minimal pure-ASGI app.

What any Python HTTP server on this box keeps of the plain loop, with none of the
multi-task work: one stock encoder, no tasks, no biases, no validation beyond the
request's shape. ``POST /predict/<anything>`` with ``{"inputs": "<text>"}`` joins a queue;
one worker thread takes every request waiting when it is free (up to ``--batch``) and runs
the ceiling's own step on them (tokenize, the packed plain graph, mean pooling, one head);
each request gets ``{"label": ..., "score": ...}``. It runs under uvicorn with the serving
process's settings (httptools, uvloop, no access log, the GIL switch interval and gc
thresholds of ``bitfit serve``), and exposes ``bitfit_batch_rows`` on ``/metrics``.

bench/http_onnx.py runs it beside ``bitfit serve`` as ``plain_http`` (``--plain-http``), so that
"server / ceiling" splits into what HTTP and batching cost a plain server on this box
(``plain_http / ceiling``) and what the multi-task server adds (``server / plain_http``)::

    .venv/bin/python -m bench.plain_http --port 8200
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from prometheus_client import CollectorRegistry, Histogram, generate_latest  # noqa: E402

from bench.plain_ceiling import Ceiling, Variant, texts_of  # noqa: E402
from server.process.metrics import _ROWS  # noqa: E402  (the server's own bucket edges, so histograms compare)
from server.process.serve_cli import GC_THRESHOLDS, GIL_SWITCH_INTERVAL_S  # noqa: E402

JSON = [(b"content-type", b"application/json")]
LABELS = ("NEGATIVE", "POSITIVE")


class Batcher:
    """One worker thread: every queued request at once (up to ``batch``), one answer per batch to the loop."""

    def __init__(self, step, batch: int, loop: asyncio.AbstractEventLoop, rows: Histogram) -> None:
        self.step, self.batch, self.loop, self.rows = step, batch, loop, rows
        self.queue: list[tuple[str, asyncio.Future]] = []
        self.ready = threading.Condition()
        threading.Thread(target=self._run, daemon=True, name="plain-worker").start()

    def submit(self, text: str) -> asyncio.Future:
        future = self.loop.create_future()
        with self.ready:
            self.queue.append((text, future))
            self.ready.notify()
        return future

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                taken, self.queue = self.queue[: self.batch], self.queue[self.batch :]
            logits = self.step([text for text, _ in taken])
            self.rows.observe(len(taken))
            self.loop.call_soon_threadsafe(_resolve, [f for _, f in taken], logits)


def _resolve(futures: list[asyncio.Future], logits: np.ndarray) -> None:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = shifted / shifted.sum(axis=1, keepdims=True)
    for future, row in zip(futures, scores.tolist()):
        if not future.done():
            best = int(row[1] > row[0])
            future.set_result(orjson.dumps({"label": LABELS[best], "score": row[best]}))


class App:
    def __init__(self, step, batch: int) -> None:
        self.step, self.batch = step, batch
        self.registry = CollectorRegistry()
        self.rows = Histogram("bitfit_batch_rows", "Rows per batch.", buckets=_ROWS, registry=self.registry)
        self.batcher: Batcher | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            self.batcher = Batcher(self.step, self.batch, asyncio.get_running_loop(), self.rows)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":
            body = generate_latest(self.registry) if scope["path"] == "/metrics" else b"{}"
            return await _reply(send, 200, body)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            text = orjson.loads(b"".join(chunks))["inputs"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return await _reply(send, 422, b'{"error": "a JSON object with a string \\"inputs\\" is required"}')
        if not isinstance(text, str):
            return await _reply(send, 422, b'{"error": "\\"inputs\\" must be a string"}')
        await _reply(send, 200, await self.batcher.submit(text))


async def _reply(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [*JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--batch", type=int, default=64, help="most requests one forward takes")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--tokenizer", default="raw", choices=["raw", "hf"])
    args = p.parse_args(argv)
    import uvicorn

    ceiling = Ceiling(texts_of("wrk"))
    step = ceiling.loop(Variant(threads=args.threads, batch=args.batch, tokenizer=args.tokenizer, packed=True))
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        uvicorn.run(App(step, args.batch), host="127.0.0.1", port=args.port, http="httptools", loop="uvloop",
                    access_log=False, log_level="warning")
    finally:
        ceiling.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
