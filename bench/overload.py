"""Overload: 100 clients send maximum-size predict requests for 20 s at one `bitfit serve`.

Measures what the hardening promises (docs/OPERATIONS.md "Failure model"):
- shedding: time from the burst's start to the first 503, and the latency of every 503
  (target: within 100 ms of arrival);
- the latency of the requests that were accepted (p50, p99);
- liveness meanwhile: /healthz probed every 20 ms from a separate process (target p99 <= 50 ms);
- memory: the server's RSS before the burst and 5 s after it (target: within 10%).

A maximum-size request is BITFIT_MAX_INPUTS_PER_REQUEST (64) texts of
BITFIT_MAX_INPUT_CHARS (10,000) characters of real-looking words. The clients are raw
asyncio HTTP/1.1 connections sending a prepared body (the client side must not be the
bottleneck); the server is the packaged MiniLM on CPU with the demo task.

    python -m bench.overload --clients 100 --seconds 20 --out bench/results/overload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import socket
import sys
import time
from pathlib import Path

from bench.common import percentile
from bench.http_servers import HOST, PYTHON, REPO, bitfit_server

WORDS = "the a film plot actors scene story quite really good bad dull witty long short music end".split()


def max_body(inputs: int, chars: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    texts = []
    for _ in range(inputs):
        words, size = [], 0
        while size < chars - 12:
            word = rng.choice(WORDS)
            words.append(word)
            size += len(word) + 1
        texts.append(" ".join(words)[:chars])
    return json.dumps({"inputs": texts}).encode()


async def _request(reader, writer, head: bytes, body: bytes) -> int:
    # Not drained before reading: a server that answers from the headers (a 503 while the
    # budget is spent) is timed as it answers, while the body still goes out behind it.
    writer.write(head + body)
    status_line = await reader.readline()
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        close |= line.lower().replace(b" ", b"") == b"connection:close\r\n"
    await reader.readexactly(length)
    if close:  # a shed answered from the headers: the server will not read the rest
        writer.close()
        raise _Closed(int(status_line.split()[1]))
    await writer.drain()
    return int(status_line.split()[1])


class _Closed(Exception):
    """The answer came with Connection: close (its status is args[0])."""


async def _client(port: int, body: bytes, until: float, results: list) -> None:
    head = (f"POST /predict/sentiment HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    reader = writer = None
    while time.perf_counter() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            sent = time.perf_counter()
            try:
                status = await _request(reader, writer, head, body)
            except _Closed as closed:
                status, writer = closed.args[0], None
            results.append((sent, time.perf_counter() - sent, status))
            if status == 503:
                await asyncio.sleep(0.05)  # a client honouring back-pressure a little (Retry-After is 1 s)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            results.append((time.perf_counter(), 0.0, 0))
            writer = None
    if writer is not None:
        writer.close()


def _probe(port: int, seconds: float, out) -> None:
    """Blocking /healthz probes in their own process: client-side stalls do not count."""
    latencies, until = [], time.perf_counter() + seconds
    with socket.create_connection((HOST, port)) as sock:
        request = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        while time.perf_counter() < until:
            started = time.perf_counter()
            sock.sendall(request)
            data = b""
            while not data.endswith(b'{"status":"ok"}'):
                data += sock.recv(4096)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    out.put(latencies)


async def _burst(port: int, body: bytes, clients: int, seconds: float) -> tuple[float, list]:
    results: list = []
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, body, started + seconds, results) for _ in range(clients)))
    return started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--chars", type=int, default=10_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import tempfile

    store = Path(tempfile.mkdtemp(prefix="bitfit-overload-"))
    preload = REPO / "examples" / "sentiment" / "sentiment.safetensors"
    server = bitfit_server(store, extra=["--preload", str(preload)], launcher=[PYTHON, "-m", "server.process.cli"],
                           env={"PYTHONPATH": str(REPO)})
    body = max_body(args.inputs, args.chars)
    with server:
        server.wait_ready()
        alone = time.perf_counter()
        warm = _request_sync(server.port, body)  # one full request: the model and tokenizer are warm
        alone = time.perf_counter() - alone  # what one max-size request costs with nothing else running
        time.sleep(2)
        rss_before = server.rss_mb()
        queue: multiprocessing.Queue = multiprocessing.Queue()
        _probe(server.port, 5.0, queue)  # the same probes on the idle server: the side-by-side baseline
        idle = queue.get()
        prober = multiprocessing.Process(target=_probe, args=(server.port, args.seconds + 1, queue))
        prober.start()
        time.sleep(0.5)
        started, results = asyncio.run(_burst(server.port, body, args.clients, args.seconds))
        healthz = queue.get(timeout=60)
        prober.join()
        time.sleep(5)  # in-flight work drains
        rss_after = server.rss_mb()
        log_tail = server.tail(5)
    shed = [(s, lat) for s, lat, status in results if status == 503]
    accepted = [lat for _, lat, status in results if status == 200]
    other = sorted({status for _, _, status in results} - {200, 503})
    report = {
        "clients": args.clients, "seconds": args.seconds, "body_bytes": len(body), "warm_request_status": warm,
        "one_request_alone_s": round(alone, 2),
        "requests": len(results), "accepted": len(accepted), "shed_503": len(shed), "other_statuses": other,
        "time_to_first_503_s": round(min(s for s, _ in shed) - started, 3) if shed else None,
        "shed_latency_ms": {"p50": round(percentile([lat for _, lat in shed], 50) * 1000, 1),
                            "p99": round(percentile([lat for _, lat in shed], 99) * 1000, 1)} if shed else None,
        "accepted_latency_s": {"p50": round(percentile(accepted, 50), 2), "p99": round(percentile(accepted, 99), 2)}
        if accepted else None,
        "healthz_ms": {"probes": len(healthz), "p50": round(percentile(healthz, 50) * 1000, 1),
                       "p99": round(percentile(healthz, 99) * 1000, 1), "max": round(max(healthz) * 1000, 1)},
        "healthz_idle_ms": {"probes": len(idle), "p50": round(percentile(idle, 50) * 1000, 1),
                            "p99": round(percentile(idle, 99) * 1000, 1)},
        "rss_mb": {"before": rss_before, "after": rss_after, "ratio": round(rss_after / rss_before, 3)},
        "server_log_tail": log_tail,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


def _request_sync(port: int, body: bytes) -> int:
    async def once() -> int:
        reader, writer = await asyncio.open_connection(HOST, port)
        head = (f"POST /predict/sentiment HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            return await _request(reader, writer, head, body)
        finally:
            writer.close()

    return asyncio.run(once())


if __name__ == "__main__":
    sys.exit(main())
