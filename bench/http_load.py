"""HTTP load generator shared by the ``bench/http_*`` benchmarks (servers: ``bench/http_servers.py``).

The load generator is a closed-loop asyncio client: ``concurrency`` workers, each on its own
keep-alive connection (``bench/bare_http.py``), each sending its next request as soon as the
previous one answers; the run stops at ``max_requests`` or ``max_seconds``, whichever comes
first. It reports throughput, p50/p90/p99 latency, failures by status, and its own CPU
time, because on a 2-core machine every CPU-second the client spends is one the server
under test loses.

Run it alone to measure that overhead against a trivial server (one fixed JSON answer)::

    .venv/bin/python -m bench.http_load --requests 3000 --concurrency 32

Everything talks to 127.0.0.1 only; every loop is bounded in count and time; every server
started here is killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx  # for the few non-load calls (readiness polls, /metrics)

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_http import Connection, split_url  # noqa: E402
from bench.http_servers import CACHE, HOST, PYTHON, ServerProcess, free_port, task_name  # noqa: E402

# i -> (method, path, json body or None); the index lets a benchmark replay one sequence.
RequestFactory = Callable[[int], tuple[str, str, dict | None]]


def emit(record: dict) -> None:
    """One JSON line per measurement, on stdout."""
    print(json.dumps(record, sort_keys=False), flush=True)


# -- the load generator ------------------------------------------------------------------
@dataclass
class LoadResult:
    requests: int = 0  # answered or failed, inside the measured window
    ok: int = 0
    failures: Counter = field(default_factory=Counter)  # "503" / "ReadTimeout" -> count
    seconds: float = 0.0
    client_cpu_s: float = 0.0  # CPU the load generator itself burned (user + system)
    latencies_ms: list[float] = field(default_factory=list, repr=False)  # successful requests only

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
        return ordered[rank]

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": sum(self.failures.values()),
            "failures": dict(self.failures),
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.ok / self.seconds, 2) if self.seconds else None,
            "p50_ms": _round(self.percentile(50)),
            "p90_ms": _round(self.percentile(90)),
            "p99_ms": _round(self.percentile(99)),
            "client_cpu_ms_per_request": round(1000 * self.client_cpu_s / self.requests, 3) if self.requests else None,
            "client_cpu_share_of_one_core": round(self.client_cpu_s / self.seconds, 3) if self.seconds else None,
        }


def ratio_summary(pairs: list[tuple[float, float]]) -> dict:
    """Per-round ratios a/b of throughputs measured back to back: median, min, max."""
    import statistics

    ratios = sorted(a / b for a, b in pairs if b)
    if not ratios:
        return {}
    return {"median_round_ratio": round(statistics.median(ratios), 4), "min_round_ratio": round(ratios[0], 4),
            "max_round_ratio": round(ratios[-1], 4)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def run_load(
    base_url: str,
    make_request: RequestFactory,
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    ok_status: tuple[int, ...] = (200,),
    check: Callable[[int, int, bytes], str | None] | None = None,
    timeout: float = 60.0,
    stop: asyncio.Event | None = None,
) -> LoadResult:
    """Closed-loop load, one connection per worker; ``check(i, status, body)`` may return a
    failure reason for an answer whose status is in ``ok_status``; setting ``stop`` ends the
    run early (requests in flight still finish and count)."""
    if concurrency < 1 or max_requests < 1 or max_seconds <= 0:
        raise ValueError("concurrency and max_requests must be >= 1 and max_seconds > 0")
    host, port = split_url(base_url)
    result = LoadResult()
    next_index = 0
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal next_index
        conn = Connection(host, port)
        try:
            while next_index < max_requests and time.perf_counter() < deadline and not (stop and stop.is_set()):
                i = next_index
                next_index += 1
                method, path, body = make_request(i)
                payload = b"" if body is None else json.dumps(body).encode()
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout):
                        status, data = await conn.request(method, path, payload)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError) as exc:
                    result.requests += 1
                    result.failures[type(exc).__name__] += 1
                    continue
                elapsed_ms = 1000 * (time.perf_counter() - t0)
                result.requests += 1
                reason = None if status in ok_status else str(status)
                if reason is None and check is not None:
                    reason = check(i, status, data)
                if reason is None:
                    result.ok += 1
                    result.latencies_ms.append(elapsed_ms)
                else:
                    result.failures[reason] += 1
        finally:
            await conn.close()

    cpu0, t0 = _cpu(), time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        result.seconds = time.perf_counter() - t0
        result.client_cpu_s = _cpu() - cpu0
    return result


def run(coro):
    """asyncio.run on uvloop when it is installed (it is, with uvicorn[standard]): less client CPU."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- workload ----------------------------------------------------------------------------
_WORDS = (
    "a gorgeous witty film the plot drags but acting is superb dull predictable script "
    "charming heartfelt moving story clumsy direction brilliant score tedious overlong "
    "funny sharp smart warm bland messy stylish thin clever tender cold sincere flat"
).split()


def short_texts(n: int = 512, seed: int = 0, min_words: int = 4, max_words: int = 12) -> list[str]:
    """Review-like short texts (about 6 to 16 tokens), seeded."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(min_words, max_words))) for _ in range(n)]


def predict_factory(texts: list[str], tasks: list[str], seed: int) -> RequestFactory:
    """Request i: POST /predict/<task> with one short text. Text i is fixed; the task is
    drawn uniformly from ``tasks`` by a seeded RNG, so two runs differ only in the tasks."""
    rng = random.Random(seed)
    picks = [rng.randrange(len(tasks)) for _ in range(1 << 16)]

    def make(i: int) -> tuple[str, str, dict]:
        return "POST", f"/predict/{tasks[picks[i % len(picks)]]}", {"inputs": texts[i % len(texts)]}

    return make


def task_check(make: RequestFactory) -> Callable[[int, int, bytes], str | None]:
    """A check that the answer is for the task request i asked for, with one prediction."""

    def check(i: int, status: int, body: bytes) -> str | None:
        try:
            answer = json.loads(body)
        except ValueError:
            return "bad_json"
        if answer.get("task") != make(i)[1].rsplit("/", 1)[-1] or len(answer.get("predictions") or []) != 1:
            return "wrong_answer"
        return None

    return check


# -- overhead: the client against a trivial server ---------------------------------------
async def _trivial_app(scope, receive, send) -> None:
    """A bare ASGI app: drain the body, answer a fixed small JSON (no framework, no work)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    body = b'{"task":"t","version":1,"predictions":[{"label":"positive","score":0.9}]}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _serve_trivial(port: int) -> None:
    import uvicorn

    uvicorn.run(_trivial_app, host=HOST, port=port, log_level="warning", access_log=False)


async def _httpx_load(base_url: str, make_request: RequestFactory, concurrency: int, max_requests: int,
                      max_seconds: float) -> LoadResult:
    """The same closed loop through httpx.AsyncClient, only to show why the bare client exists."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    result, next_index, deadline = LoadResult(), 0, time.perf_counter() + max_seconds
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < max_requests and time.perf_counter() < deadline:
                i, next_index = next_index, next_index + 1
                method, path, body = make_request(i)
                t0 = time.perf_counter()
                response = await client.request(method, base_url + path, json=body)
                result.requests += 1
                result.ok += response.status_code == 200
                result.latencies_ms.append(1000 * (time.perf_counter() - t0))

        cpu0, t0 = _cpu(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds, result.client_cpu_s = time.perf_counter() - t0, _cpu() - cpu0
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the load generator's own overhead against a trivial server.")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--httpx-requests", type=int, default=2000, help="the same through httpx (0 = skip)")
    parser.add_argument("--serve-trivial", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_trivial:
        _serve_trivial(args.serve_trivial)
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = ServerProcess("trivial", [PYTHON, "-m", "bench.http_load", "--serve-trivial", str(port)], port)
    texts, tasks = short_texts(), [task_name(i) for i in range(100)]
    with server:
        server.wait_ready("/", timeout=60)
        run(run_load(server.url, predict_factory(texts, tasks, 0), concurrency=args.concurrency,
                     max_requests=200, max_seconds=10))  # warm-up
        cpu0 = server.cpu_seconds()
        result = run(run_load(server.url, predict_factory(texts, tasks, 1), concurrency=args.concurrency,
                              max_requests=args.requests, max_seconds=args.seconds))
        server_cpu = server.cpu_seconds() - cpu0
        emit({"bench": "http_load_overhead", "client": "bare asyncio (bench.http_load.Connection)",
              "server": "trivial uvicorn ASGI app (fixed JSON)", "concurrency": args.concurrency,
              "cpus": os.cpu_count(), **result.summary(),
              "server_cpu_ms_per_request": round(1000 * server_cpu / max(result.ok, 1), 3)})
        if args.httpx_requests:
            other = run(_httpx_load(server.url, predict_factory(texts, tasks, 2), args.concurrency,
                                    args.httpx_requests, args.seconds))
            emit({"bench": "http_load_overhead", "client": "httpx.AsyncClient", "server": "the same",
                  "concurrency": args.concurrency, **other.summary()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
