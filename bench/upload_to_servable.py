"""Upload to servable: how long from starting an HTTP upload until the task answers.

Against one ``bitfit serve`` (packaged MiniLM, CPU) holding 100 tasks, two parts:

1. **Idle server, one at a time.** 50 MiniLM bias sets (about 110 KB each, serialized
   beforehand, as a client holding a file would have them): even ones are new tasks
   (``POST /tasks``), odd ones replace a served task (``PUT /tasks/{task}``). For each we
   time from the first byte of the upload until the 201 (``upload_ms``), and until a
   ``POST /predict/{task}`` answers *with the uploaded version* (``servable_ms``: the 201,
   then predicts until one does; the server promises the very next one, and
   ``predict_retries`` counts any that did not). Target: p50 <= 50 ms. For comparison it
   also reports a plain predict's latency on the same idle server, and the server's own
   mean upload and validation times from /metrics. ``--what-if-no-fsync`` times the same
   uploads, interleaved one by one, on a second server whose store skips fsync (not
   durable; only to show what the store's fsyncs cost).
2. **Under load.** The mixed 100-task load of http_mixed_vs_single (concurrency 32) runs
   while another 50 uploads and replacements happen, the replacements hitting tasks the
   load is using. Target: 0 failed requests (every predict answers 200 for its task).

    .venv/bin/python -m bench.upload_to_servable
    .venv/bin/python -m bench.upload_to_servable --what-if-no-fsync
    .venv/bin/python -m bench.upload_to_servable --uploads 6      # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_http import Connection, multipart, split_url
from bench.http_load import LoadResult, emit, predict_factory, run, run_load, short_texts, task_check
from bench.http_servers import (
    PYTHON,
    add_server_options,
    bias_set_bytes,
    bitfit_server,
    build_store,
    histogram_means,
    histograms,
    minilm_spec,
    server_env,
    start_all,
    task_name,
)

TARGET_P50_MS = 50.0
MAX_PREDICT_TRIES = 200  # bounded wait for "servable"; the promise is the very first try


def plan(spec, n: int, tag: str, served: list[str], seed: int) -> list[tuple[str, str, bytes]]:
    """n (method, task, file bytes): new tasks and replacements of served ones, alternating."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            name = f"{tag}-{i:04d}"
            out.append(("POST", name, bias_set_bytes(spec, name, seed=10_000 + seed + i)))
        else:
            name = rng.choice(served)
            out.append(("PUT", name, bias_set_bytes(spec, name, seed=20_000 + seed + i)))
    return out


async def upload_then_predict(conn: Connection, method: str, task: str, data: bytes, text: str) -> dict:
    """One upload, then predicts until the uploaded version answers; times in ms from the upload's start."""
    body, content_type = multipart(data, f"{task}.safetensors")
    path = "/tasks" if method == "POST" else f"/tasks/{task}"
    t0 = time.perf_counter()
    status, answer = await conn.request(method, path, body, content_type)
    t_upload = time.perf_counter()
    out = {"method": method, "task": task, "bytes": len(data), "status": status,
           "upload_ms": 1000 * (t_upload - t0), "servable_ms": None, "predict_retries": 0}
    if status not in (200, 201):
        out["error"] = answer[:300].decode(errors="replace")
        return out
    version = json.loads(answer).get("version")
    predict = json.dumps({"inputs": text}).encode()
    for attempt in range(MAX_PREDICT_TRIES):
        status, answer = await conn.request("POST", f"/predict/{task}", predict)
        if status == 200 and json.loads(answer).get("version") == version:
            out["servable_ms"] = 1000 * (time.perf_counter() - t0)
            out["predict_retries"] = attempt
            break
    return out


async def upload_all(url: str, jobs: list[tuple[str, str, bytes]], text: str, pause_s: float = 0.0) -> list[dict]:
    conn = Connection(*split_url(url))
    try:
        results = []
        for method, task, data in jobs:
            results.append(await upload_then_predict(conn, method, task, data, text))
            if pause_s:
                await asyncio.sleep(pause_s)
        return results
    finally:
        await conn.close()


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p90": None, "max": None}
    s = sorted(values)
    def pick(q: float) -> float:  # nearest rank
        return round(s[max(0, min(len(s) - 1, round(q * len(s) + 0.5) - 1))], 2)

    return {"p50": pick(0.5), "p90": pick(0.9), "max": round(s[-1], 2)}


def report(part: str, results: list[dict], extra: dict | None = None) -> dict:
    ok = [r for r in results if r["status"] in (200, 201)]
    record = {
        "bench": "upload_to_servable", "part": part, "uploads": len(results), "failed_uploads": len(results) - len(ok),
        "not_servable": sum(r["servable_ms"] is None for r in ok),
        "predict_retries": sum(r["predict_retries"] for r in ok),
        "bytes": results[0]["bytes"] if results else None,
    }
    for method in ("POST", "PUT", "all"):
        chosen = [r for r in ok if method in ("all", r["method"])]
        for key in ("upload_ms", "servable_ms"):
            for stat, value in percentiles([r[key] for r in chosen if r[key] is not None]).items():
                record[f"{method.lower()}_{key[:-3]}_{stat}_ms"] = value
    errors = {str(r["status"]): r.get("error") for r in results if r["status"] not in (200, 201)}
    if errors:
        record["errors"] = errors
    return {**record, **(extra or {})}


async def under_load(url: str, jobs, text: str, args, make) -> tuple[LoadResult, list[dict]]:
    stop = asyncio.Event()
    load = asyncio.create_task(run_load(url, make, concurrency=args.concurrency, max_requests=10**7,
                                        max_seconds=args.load_seconds, check=task_check(make), stop=stop))
    await asyncio.sleep(1.0)  # the load is running before the first upload
    try:
        results = await upload_all(url, jobs, text, pause_s=args.pause)
        await asyncio.sleep(1.0)  # and keeps running after the last one
    finally:
        stop.set()
    return await load, results


async def upload_interleaved(urls: dict[str, str], jobs, text: str) -> dict[str, list[dict]]:
    """The same jobs on every server, job by job, alternating which server goes first."""
    conns = {name: Connection(*split_url(url)) for name, url in urls.items()}
    results: dict[str, list[dict]] = {name: [] for name in urls}
    try:
        for i, (method, task, data) in enumerate(jobs):
            for name in (list(urls) if i % 2 == 0 else list(reversed(urls))):
                results[name].append(await upload_then_predict(conns[name], method, task, data, text))
    finally:
        for conn in conns.values():
            await conn.close()
    return results


def serve_without_fsync(argv: list[str]) -> int:
    """``bitfit`` with os.fsync a no-op: the what-if server (durability off) for comparison."""
    os.fsync = lambda fd: None
    from server.process.cli import main as bitfit_main

    return bitfit_main(argv)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Upload to servable over HTTP, idle and under load.")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--uploads", type=int, default=50, help="per part")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between uploads under load")
    parser.add_argument("--load-seconds", type=float, default=180.0, help="cap on the load run")
    parser.add_argument("--what-if-no-fsync", action="store_true",
                        help="also time the idle part on a second server whose store skips fsync (not durable), "
                             "interleaved upload by upload, to show what the fsyncs cost")
    add_server_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-without-fsync"]:
        return serve_without_fsync(argv[1:])
    args = parse_args(argv)
    spec = minilm_spec()
    served = [task_name(i) for i in range(args.tasks)]
    texts = short_texts()
    idle_jobs = plan(spec, args.uploads, "up", served, seed=0)
    load_jobs = plan(spec, args.uploads, "hot", served, seed=1)
    env = server_env(args.server_env)
    stores = {"bitfit": build_store(spec, args.tasks, fresh=True)}  # private copies: this benchmark writes
    servers = {"bitfit": bitfit_server(stores["bitfit"], extra=args.server_arg, env=env)}
    if args.what_if_no_fsync:
        name = "bitfit-without-fsync (what-if)"
        stores[name] = build_store(spec, args.tasks, fresh=True)
        launcher = [PYTHON, "-m", "bench.upload_to_servable", "--serve-without-fsync"]
        servers[name] = bitfit_server(stores[name], extra=args.server_arg, env=env, launcher=launcher)
    try:
        start_all(list(servers.values()))
        for server in servers.values():
            run(run_load(server.url, predict_factory(texts, served, seed=99), concurrency=args.concurrency,
                         max_requests=200, max_seconds=60))  # warm-up
            run(upload_all(server.url, plan(spec, 4, "warm", served, seed=2), texts[0]))  # warm the upload path
        idle_part(args, servers, idle_jobs, texts, served)
        load_part(args, servers["bitfit"], load_jobs, texts, served)
    finally:
        for server in servers.values():
            server.stop()
        for store in stores.values():
            shutil.rmtree(store, ignore_errors=True)
    return 0


def idle_part(args: argparse.Namespace, servers: dict, jobs, texts: list[str], served: list[str]) -> None:
    """Part 1: the uploads one at a time on idle servers, interleaved; one line per server."""
    before = {name: histograms(server.url) for name, server in servers.items()}
    idle = run(upload_interleaved({name: server.url for name, server in servers.items()}, jobs, texts[0]))
    for name, server in servers.items():
        server_side = histogram_means(before[name], histograms(server.url))
        # For comparison: a plain predict, one at a time, on the same idle server.
        alone = run(run_load(server.url, predict_factory(texts, served, seed=4), concurrency=1,
                             max_requests=args.uploads, max_seconds=60))
        record = report("idle", idle[name], {
            "server": name, "predict_alone_p50_ms": alone.summary()["p50_ms"],
            **{k: v for k, v in server_side.items() if "upload" in k or "validation" in k}})
        record["target_p50_ms"] = TARGET_P50_MS
        for key in ("upload", "servable"):
            p50 = record[f"all_{key}_p50_ms"]
            record[f"met_{key}"] = p50 is not None and p50 <= TARGET_P50_MS
        emit(record)


def load_part(args: argparse.Namespace, server, jobs, texts: list[str], served: list[str]) -> None:
    """Part 2: uploads and replacements while the mixed-task load runs; met when no request failed."""
    make = predict_factory(texts, served, seed=3)
    load, loaded = run(under_load(server.url, jobs, texts[0], args, make))
    emit(report("under_load", loaded, {
        "server": "bitfit", "concurrency": args.concurrency,
        "load": {k: v for k, v in load.summary().items() if not k.startswith("client")},
        "met": load.requests > 0 and not load.failures and all(r["status"] in (200, 201) for r in loaded),
        "cpus": os.cpu_count()}))


if __name__ == "__main__":
    sys.exit(main())
