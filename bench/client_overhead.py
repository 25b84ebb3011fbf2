"""The Python client's cost: ``bitfit_client.Client.predict`` vs a raw ``httpx`` POST.

One ``bitfit serve`` (packaged MiniLM, CPU, one task); one request at a time, the same
short texts, on one keep-alive connection each. Blocks of ``--block`` requests alternate
(raw, client, client, raw, ...) so that outside load hits both alike. Reported: p50 of each,
their ratio and difference (what the client adds: building the call, the typed model of
the answer, the retry bookkeeping)::

    .venv/bin/python -m bench.client_overhead
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitfit_client import Client

from bench.http_load import emit, short_texts
from bench.http_servers import add_server_options, bitfit_server, build_store, minilm_spec, server_env, task_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bitfit_client predict vs raw httpx, p50 latency.")
    parser.add_argument("--blocks", type=int, default=20, help="blocks per side")
    parser.add_argument("--block", type=int, default=50, help="requests per block")
    add_server_options(parser)
    args = parser.parse_args(argv)

    store = build_store(minilm_spec(), 1)
    texts, task = short_texts(), task_name(0)
    times: dict[str, list[float]] = {"raw": [], "client": []}
    server = bitfit_server(store, extra=args.server_arg, env=server_env(args.server_env))
    with server, httpx.Client(base_url=server.url, timeout=30) as raw, Client(server.url, timeout=30) as client:
        server.wait_ready()

        def call_raw(text: str) -> None:
            response = raw.post(f"/predict/{task}", json={"inputs": text})
            response.raise_for_status()
            assert response.json()["predictions"][0]["label"]

        def call_client(text: str) -> None:
            assert client.predict(task, text).predictions[0].label

        calls = {"raw": call_raw, "client": call_client}
        for i in range(50):  # warm both paths
            call_raw(texts[i])
            call_client(texts[i])
        for b in range(2 * args.blocks):
            side = ("raw", "client", "client", "raw")[b % 4]
            for i in range(args.block):
                text = texts[(b * args.block + i) % len(texts)]
                start = time.perf_counter()
                calls[side](text)
                times[side].append(1000 * (time.perf_counter() - start))
    p50 = {side: statistics.median(values) for side, values in times.items()}
    emit({"bench": "client_overhead", "requests_per_side": len(times["raw"]), "raw_p50_ms": round(p50["raw"], 3),
          "client_p50_ms": round(p50["client"], 3), "p50_ratio": round(p50["client"] / p50["raw"], 4),
          "client_adds_p50_ms": round(p50["client"] - p50["raw"], 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
