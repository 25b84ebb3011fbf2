"""Pieces of bench/http_onnx.py: the engine alone, the load (wrk or the bench's own), batch sizes.

- ``EngineAlone``: what the server's engine does for one batch of requests, in this
  process, no HTTP: one ``Engine.encode`` per request (one text), ``Engine.run`` on the
  batch, 100 random tasks, the server's intra-op threads; rows/s.
- ``load``: closed-loop load at concurrency c, one short text per request, a random task
  per request: wrk (``-t2``, ``bench/wrk_predict.lua``) when installed, else
  ``bench.http_load``'s asyncio generator. Both report requests, seconds, p50/p99.
- ``batch_sizes``: the server's ``bitfit_batch_rows`` histogram (cumulative buckets) from
  /metrics; two snapshots' difference is one phase's batch-size histogram.
- ``add_engine_options``: the options of the benches that run the engine alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

LUA = Path(__file__).with_name("wrk_predict.lua")


def add_engine_options(p: argparse.ArgumentParser, texts: str) -> None:
    """--texts, --tasks, --threads and --cache (the server's own ONNX cache folder when left out)."""
    p.add_argument("--texts", default=texts, choices=["short", "wrk"])
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=onnx_cache, default=onnx_cache(None),
                   help="ONNX cache folder (default: the server's, BITFIT_ONNX_CACHE or ~/.cache/bitfit/onnx)")


def onnx_cache(folder: str | None) -> Path:
    from server.process.settings import Settings

    return Settings(onnx_cache=folder).resolved_onnx_cache()


class EngineAlone:
    """The server's engine on the same texts, batch by batch, no HTTP (rows/s)."""

    def __init__(self, backbone, texts: list[str], tasks: int, threads: int, batch: int, cache: Path, pack: bool = True) -> None:
        import common  # bench/common.py (bench/ is on sys.path: http_onnx puts it there)

        from engine import Engine
        from engine.runners.ort import OnnxOptions

        self.engine = Engine(backbone, onnx=OnnxOptions(cache, threads=threads, pack=pack))
        self.handles = common.register_random_tasks(self.engine, tasks, seed=0)
        self.texts, self.batch, self.rng = texts, batch, random.Random(0)
        self.step(0)  # warm

    def step(self, start: int) -> None:
        items = []
        for k in range(self.batch):
            handle = self.handles[self.rng.randrange(len(self.handles))]
            items.append((handle, self.engine.encode(handle, [self.texts[(start + k) % len(self.texts)]])[0]))
        self.engine.run(items)

    def measure(self, seconds: float) -> float:
        rows, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.step(rows)
            rows += self.batch
        return rows / (time.perf_counter() - t0)


def has_wrk() -> bool:
    return shutil.which("wrk") is not None


def load(url: str, texts: list[str], tasks: list[str], concurrency: int, seconds: float, use_wrk: bool, seed: int) -> dict:
    """One closed-loop phase: {"requests", "ok", "seconds", "rps", "p50_ms", "p99_ms", "failed"}."""
    if use_wrk:
        return _wrk(url, texts, len(tasks), concurrency, seconds)
    from bench.http_load import predict_factory, run, run_load

    result = run(run_load(url, predict_factory(texts, tasks, seed), concurrency=concurrency, max_requests=10**7, max_seconds=seconds))
    s = result.summary()
    return {"requests": s["requests"], "ok": s["ok"], "seconds": s["seconds"], "rps": s["throughput_rps"], "p50_ms": s["p50_ms"],
            "p99_ms": s["p99_ms"], "failed": s["failed"]}


def _wrk(url: str, texts: list[str], tasks: int, concurrency: int, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(texts) + "\n")
    try:
        env = {**os.environ, "WRK_TEXTS_FILE": f.name, "WRK_TASKS": str(tasks)}
        out = subprocess.run(["wrk", "-t2", f"-c{concurrency}", f"-d{seconds:g}s", "-s", str(LUA), url], capture_output=True,
                             text=True, env=env, timeout=seconds + 60).stdout
    finally:
        os.unlink(f.name)
    line = json.loads(next(x for x in reversed(out.strip().splitlines()) if x.startswith("{")))
    failed = line["errors_status"] + line["errors_socket"]
    return {"requests": line["requests"], "ok": line["requests"] - line["errors_status"], "seconds": line["seconds"],
            "rps": round((line["requests"] - line["errors_status"]) / line["seconds"], 2), "p50_ms": line["p50_ms"],
            "p99_ms": line["p99_ms"], "failed": failed}


def batch_sizes(url: str) -> dict[str, float]:
    """``le`` -> cumulative count of ``bitfit_batch_rows`` (empty if /metrics did not answer)."""
    try:
        text = httpx.get(url + "/metrics", timeout=30, trust_env=False).text
    except httpx.HTTPError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("bitfit_batch_rows_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def histogram(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """Batches per size range between two snapshots: {"1": n, "2": n, "3-4": n, ..., "32": n}."""
    out, low, previous = {}, 1, 0.0
    for le in after:
        count = after[le] - before.get(le, 0.0)
        if le == "+Inf":
            if count > previous:
                out[f">{low - 1}"] = int(count - previous)
            break
        high = int(float(le))
        if count > previous:
            out[str(high) if high == low else f"{low}-{high}"] = int(count - previous)
        low, previous = high + 1, count
    return out


def merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Two histograms added, smallest sizes first."""
    low = lambda key: int(key.lstrip(">").split("-")[0])  # noqa: E731
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted({*a, *b}, key=low)}
