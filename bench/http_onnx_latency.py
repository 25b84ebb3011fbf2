"""Open-loop load for bench/http_onnx.py's half-load latency: arrivals at a fixed rate."""

from __future__ import annotations

import asyncio
import json
import time

from bench.bare_http import Connection, split_url
from bench.http_load import LoadResult


async def open_loop(base_url: str, make, rate: float, seconds: float) -> LoadResult:
    """Arrivals at a fixed ``rate`` per second regardless of answers (a connection per request in flight)."""
    host, port = split_url(base_url)
    result, idle = LoadResult(), []
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        conn = idle.pop() if idle else Connection(host, port)
        method, path, body = make(i)
        start = time.perf_counter()
        try:
            status, _ = await conn.request(method, path, json.dumps(body).encode())
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            result.requests += 1
            result.failures[type(exc).__name__] += 1
            return
        result.requests += 1
        if status == 200:
            result.ok += 1
            result.latencies_ms.append(1000 * (time.perf_counter() - start))
        else:
            result.failures[str(status)] += 1
        idle.append(conn)

    tasks, i = [], 0
    while (now := time.perf_counter() - t0) < seconds:
        due = i / rate
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.ensure_future(one(i)))
        i += 1
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - t0
    for conn in idle:
        await conn.close()
    return result
