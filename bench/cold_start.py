"""Cold start: time from launching ``bitfit serve`` until ``/readyz`` answers 200.

With 1,000 random-but-valid MiniLM tasks in the store, against the same with 0 tasks, so
the per-task cost of start-up (read, validate, register every task) is visible apart
from the fixed cost (Python, torch and transformers imports, loading the backbone).
Starts alternate (0, 1000, 1000, 0, ...) so other load on the machine hits both alike;
``/readyz`` is polled every 20 ms. Also reports the server's resident memory once ready.

    .venv/bin/python -m bench.cold_start
    .venv/bin/python -m bench.cold_start --tasks 50 --repeats 1     # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.http_load import emit
from bench.http_servers import add_server_options, bitfit_server, build_store, minilm_spec, server_env


def start_once(store: Path, extra: list[str], env: dict[str, str]) -> dict:
    server = bitfit_server(store, extra=extra, env=env)
    with server:
        seconds = server.wait_ready(timeout=600)
        ready = httpx.get(server.url + "/readyz", timeout=10, trust_env=False).json()
        rss = server.rss_mb()
    count = ready.get("tasks", ready.get("task_count")) if isinstance(ready, dict) else None
    return {"seconds": seconds, "rss_mb": rss, "readyz_tasks": count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time to /readyz with N tasks in the store vs 0.")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="starts per store size")
    add_server_options(parser)
    args = parser.parse_args(argv)

    spec = minilm_spec()
    stores = {0: build_store(spec, 0), args.tasks: build_store(spec, args.tasks)}  # built before any timing
    times: dict[int, list[float]] = {n: [] for n in stores}
    for r in range(args.repeats):
        for n in (0, args.tasks) if r % 2 == 0 else (args.tasks, 0):
            result = start_once(stores[n], args.server_arg, server_env(args.server_env))
            times[n].append(result["seconds"])
            emit({"bench": "cold_start", "repeat": r, "tasks_in_store": n, "seconds_to_ready": round(result["seconds"], 3),
                  "readyz_tasks": result["readyz_tasks"], "rss_mb": result["rss_mb"]})
    empty, full = statistics.median(times[0]), statistics.median(times[args.tasks])
    emit({"bench": "cold_start", "summary": True, "repeats": args.repeats,
          "median_s_0_tasks": round(empty, 3), f"median_s_{args.tasks}_tasks": round(full, 3),
          "per_task_ms": round(1000 * (full - empty) / args.tasks, 3) if args.tasks else None,
          "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
