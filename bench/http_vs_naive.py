"""The real server against the naive one a user would otherwise write (bench/naive_server.py).

Both serve the same 100 random-but-valid MiniLM tasks from the same store folder, on the
CPU, and get the same closed-loop load: concurrency 32, one short text per request, each
request a uniformly random task, the same sequence of (task, text) for both. Both servers
run side by side (an idle one costs nothing) and phases of equal length interleave
(bitfit, naive, naive, bitfit, ...), so other load on the machine hits both alike.
Target: bitfit >= 2x the naive server's throughput, judged on the median of per-round
ratios; p50 and p99 latency reported for both, and each server's CPU per request.
Each ``--variant-env KEY=VALUE`` adds another bitfit server with that environment (e.g.
OMP_NUM_THREADS=1) to the same rounds, with its own summary line::

    .venv/bin/python -m bench.http_vs_naive
    .venv/bin/python -m bench.http_vs_naive --variant-env OMP_NUM_THREADS=1
    .venv/bin/python -m bench.http_vs_naive --seconds 3 --rounds 1     # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import (
    LoadResult,
    emit,
    predict_factory,
    ratio_summary,
    run,
    run_load,
    short_texts,
    task_check,
)
from bench.http_servers import (
    add_server_options,
    bitfit_server,
    build_store,
    minilm_spec,
    naive_server,
    server_env,
    start_all,
    task_name,
)

TARGET = 2.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="HTTP throughput and latency: bitfit serve vs the naive server.")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each phase (short: neighbours share the outside load)")
    parser.add_argument("--requests", type=int, default=100_000, help="cap per phase")
    parser.add_argument("--rounds", type=int, default=8, help="each round runs every server once")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--variant-env", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                        help="also run another bitfit server with this extra environment, e.g. "
                             "OMP_NUM_THREADS=1, in the same interleaved rounds (repeatable: one server each)")
    add_server_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = minilm_spec()
    store = build_store(spec, args.tasks)
    texts = short_texts()
    tasks = [task_name(i) for i in range(args.tasks)]
    env = server_env(args.server_env)  # the same environment for every server
    servers = {"bitfit": bitfit_server(store, extra=args.server_arg, env=env), "naive": naive_server(store, env=env)}
    for variant in args.variant_env:
        servers[f"bitfit+{variant}"] = bitfit_server(store, extra=args.server_arg,
                                                     env={**env, **server_env(variant.split(","))})
    try:
        start_all(list(servers.values()))
        merged, cpu, rounds = run_rounds(args, servers, texts, tasks)
        rss = {name: server.rss_mb() for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    report(args, env, merged, cpu, rounds, rss)
    return 0


def run_rounds(args: argparse.Namespace, servers: dict, texts: list[str], tasks: list[str]):
    """Warm every server up, then the interleaved rounds (one JSON line per phase). Returns
    each server's pooled load result, its CPU seconds over the phases, and each round's throughputs."""
    merged = {name: LoadResult() for name in servers}
    cpu = {name: 0.0 for name in servers}  # server CPU seconds over the measured phases
    rounds: list[dict[str, float]] = []
    for server in servers.values():
        run(run_load(server.url, predict_factory(texts, tasks, seed=99), concurrency=args.concurrency,
                     max_requests=args.warmup, max_seconds=60))
    for r in range(args.rounds):
        order = list(servers) if r % 2 == 0 else list(reversed(servers))
        rounds.append({})
        for name in order:
            make = predict_factory(texts, tasks, seed=r)  # the same (task, text) sequence for all
            cpu0 = servers[name].cpu_seconds()
            result = run(run_load(servers[name].url, make, concurrency=args.concurrency,
                                  max_requests=args.requests, max_seconds=args.seconds, check=task_check(make)))
            used = servers[name].cpu_seconds() - cpu0
            cpu[name] += used
            rounds[-1][name] = result.ok / result.seconds
            emit({"bench": "http_vs_naive", "round": r, "server": name, "tasks": args.tasks,
                  "concurrency": args.concurrency, **result.summary(),
                  "server_cpu_ms_per_request": round(1000 * used / max(result.ok, 1), 3)})
            pool(merged[name], result)
    return merged, cpu, rounds


def pool(total: LoadResult, result: LoadResult) -> None:
    """Add one phase's result to a server's total over the rounds."""
    total.requests += result.requests
    total.ok += result.ok
    total.failures.update(result.failures)
    total.seconds += result.seconds
    total.client_cpu_s += result.client_cpu_s
    total.latencies_ms += result.latencies_ms


def report(args: argparse.Namespace, env: dict[str, str], merged: dict[str, LoadResult], cpu: dict[str, float],
           rounds: list[dict[str, float]], rss: dict[str, float | None]) -> None:
    """One summary line per bitfit server, against the naive one."""
    summary = {name: result.summary() for name, result in merged.items()}
    cpu_ms = {name: 1000 * cpu[name] / max(merged[name].ok, 1) for name in merged}
    for name in merged:
        if name == "naive":
            continue
        per_round = ratio_summary([(r[name], r["naive"]) for r in rounds])
        emit({"bench": "http_vs_naive", "summary": True, "server": name, "tasks": args.tasks,
              "concurrency": args.concurrency, "rounds": args.rounds, "seconds_per_phase": args.seconds,
              "server_env": env, **{f"{who}_{key}": summary[n][key] for who, n in (("bitfit", name), ("naive", "naive"))
                                   for key in ("throughput_rps", "p50_ms", "p99_ms", "failed")},
              "pooled_ratio": round(summary[name]["throughput_rps"] / summary["naive"]["throughput_rps"], 3),
              **per_round,
              "bitfit_server_cpu_ms_per_request": round(cpu_ms[name], 3),
              "naive_server_cpu_ms_per_request": round(cpu_ms["naive"], 3),
              "cpu_ratio": round(cpu_ms["naive"] / cpu_ms[name], 3),
              "target": TARGET, "met": per_round["median_round_ratio"] >= TARGET,
              "bitfit_rss_mb": rss[name], "naive_rss_mb": rss["naive"], "cpus": os.cpu_count()})


if __name__ == "__main__":
    sys.exit(main())
