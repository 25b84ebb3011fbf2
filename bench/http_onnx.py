"""HTTP throughput and latency: the server before/after this work, and the plain ONNX Runtime ceiling.

Servers (``bitfit serve``, packaged MiniLM, CPU, 100 random tasks in one store), all up at
once and loaded in turn, round by round, so that outside load on the box hits each alike:

- ``before``: the server at ``--before-src`` (a source tree of an older commit, e.g.
  ``git archive c8bf47f | tar -x -C /tmp/before``): PyTorch, the old request path;
- ``torch``: this tree, ``--backend torch``;
- ``onnxruntime``: this tree, ``--backend onnxruntime`` (and ``onnxruntime_int8`` with ``--int8``).

Per round and server: closed-loop load, ``--concurrency`` 32, one short text per request,
a random task of the 100 per request: throughput, p50/p99 and the server's CPU per request.

The ceiling, measured in this process between the rounds on the same texts: plain
ONNX Runtime (the stock encoder, same exporter) + tokenization + mean pooling + a head,
batches of ``--batch`` 32, ``--threads`` intra-op threads (what the servers get on this
box): rows/s. Target: server throughput / ceiling >= 0.8.

Then latency at half load: each server gets open-loop arrivals at half the throughput it
reached, for ``--seconds``: p50/p99. One JSON line per phase, then a summary::

    .venv/bin/python -m bench.http_onnx --before-src /tmp/before --rounds 4 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_http import Connection, split_url
from bench.http_load import LoadResult, emit, predict_factory, run, run_load, short_texts
from bench.http_servers import PYTHON, bitfit_server, build_store, minilm_spec, task_name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before-src", help="source tree of the 'before' server (omit to skip it)")
    p.add_argument("--int8", action="store_true")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--cache", default=None, help="ONNX cache folder for the servers")
    return p.parse_args(argv)


def servers(args: argparse.Namespace, store: Path) -> dict:
    env = {"BITFIT_ONNX_CACHE": args.cache} if args.cache else {}
    out = {}
    if args.before_src:
        # The CLI's module moved with server/ in rooms (server.cli -> server.process.cli): run whichever the tree has.
        # (decided by the tree's files: the editable install's finder would map server.process to this tree)
        rooms = (Path(args.before_src) / "server" / "process").is_dir()
        code = (f"import sys, importlib; sys.path.insert(0, {args.before_src!r}); "
                f"sys.exit(importlib.import_module({'server.process.cli' if rooms else 'server.cli'!r}).main())")
        launcher = [PYTHON, "-c", code]
        out["before"] = bitfit_server(store, env={"PYTHONPATH": args.before_src}, launcher=launcher)
    out["torch"] = bitfit_server(store, extra=["--backend", "torch"], env=env)
    out["onnxruntime"] = bitfit_server(store, extra=["--backend", "onnxruntime"], env=env)
    if args.int8:
        out["onnxruntime_int8"] = bitfit_server(store, extra=["--backend", "onnxruntime", "--quantize", "int8"], env=env)
    return out


def ceiling(texts: list[str], batch: int, threads: int, seconds: float) -> dict:
    """Plain ONNX Runtime rows/s on ``texts`` in batches, tokenization included."""
    import tempfile

    import onnxruntime as ort
    import torch

    sys.path.insert(0, str(Path(__file__).parent))  # engine_onnx is a script: it imports `common`
    from bench.engine_onnx import export_plain, plain_runner
    from engine import load_backbone

    backbone = load_backbone(device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="bitfit-ceiling-"))
    export_plain(backbone, tmp / "plain.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(tmp / "plain.onnx"), options, providers=["CPUExecutionProvider"])
    runner = plain_runner(session, backbone, torch.nn.Linear(backbone.spec.hidden_size, 2))
    runner(texts[:batch])

    def measure() -> tuple[float, float]:
        rows, t0, c0, i = 0, time.perf_counter(), time.process_time(), 0
        while time.perf_counter() - t0 < seconds:
            runner([texts[(i + k) % len(texts)] for k in range(batch)])
            rows, i = rows + batch, i + batch
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return rows / wall, 1000 * cpu / rows

    return {"measure": measure}


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)  # the ceiling's pooling and head; the client is asyncio
    store = build_store(minilm_spec(), args.tasks)
    texts, every = short_texts(), [task_name(i) for i in range(args.tasks)]
    procs = servers(args, store)
    measure = ceiling(texts, args.batch, args.threads, args.seconds)["measure"]
    rps: dict[str, list[float]] = {name: [] for name in procs}
    cpu_ms: dict[str, list[float]] = {name: [] for name in procs}
    ceilings: list[tuple[float, float]] = []
    try:
        for server in procs.values():
            server.start()
        for server in procs.values():
            server.wait_ready()
            warm = predict_factory(texts, every, seed=99)
            run(run_load(server.url, warm, concurrency=args.concurrency, max_requests=300, max_seconds=60))
        for r in range(args.rounds):
            names = list(procs)[r % len(procs):] + list(procs)[: r % len(procs)]
            ceilings.append(measure())
            rows_per_s, cpu_per_row = ceilings[-1]
            emit({"bench": "http_onnx_ceiling", "round": r, "rows_per_s": round(rows_per_s, 1), "cpu_ms_per_row": round(cpu_per_row, 3)})
            for name in names:
                server = procs[name]
                cpu0 = server.cpu_seconds()
                result = run(run_load(server.url, predict_factory(texts, every, seed=r), concurrency=args.concurrency,
                                      max_requests=1_000_000, max_seconds=args.seconds))
                cpu = 1000 * (server.cpu_seconds() - cpu0) / max(result.ok, 1)
                rps[name].append(result.ok / result.seconds)
                cpu_ms[name].append(cpu)
                emit({"bench": "http_onnx", "round": r, "server": name, **result.summary(), "server_cpu_ms_per_request": round(cpu, 3)})
        ceiling_rps = statistics.median(c[0] for c in ceilings)
        half = {}
        for name, server in procs.items():
            rate = statistics.median(rps[name]) / 2
            result = run(open_loop(server.url, predict_factory(texts, every, seed=7), rate, args.seconds))
            half[name] = {"rate": round(rate, 1), "p50_ms": result.summary()["p50_ms"], "p99_ms": result.summary()["p99_ms"],
                          "failed": result.requests - result.ok}
            emit({"bench": "http_onnx_half_load", "server": name, **half[name]})
    finally:
        for server in procs.values():
            server.stop()
    emit({"bench": "http_onnx", "summary": True, "rounds": args.rounds, "seconds_per_phase": args.seconds, "cpus": os.cpu_count(),
          "shared_box": True, "ceiling_rows_per_s": round(ceiling_rps, 1),
          "ceiling_cpu_ms_per_row": round(statistics.median(c[1] for c in ceilings), 3),
          **{f"{n}_rps": round(statistics.median(v), 1) for n, v in rps.items()},
          **{f"{n}_over_ceiling": round(statistics.median(v) / ceiling_rps, 3) for n, v in rps.items()},
          **{f"{n}_server_cpu_ms_per_request": round(statistics.median(v), 3) for n, v in cpu_ms.items()},
          # CPU per row of the ceiling over CPU per request of the server: the throughput ratio
          # a CPU-bound pair would show without outside load (the wall ratio favours the
          # server's several threads when other processes crowd the cores).
          **{f"{n}_over_ceiling_cpu": round(statistics.median(c[1] for c in ceilings) / statistics.median(v), 3)
             for n, v in cpu_ms.items()},
          "half_load": half, "target_over_ceiling": 0.8})
    return 0


if __name__ == "__main__":
    sys.exit(main())
