"""Throughput through Ray Serve against plain `bitfit serve`: one replica each, same load.

Both serve the same 100-task filesystem store (packaged MiniLM, CPU, one torch thread:
`bitfit serve` keeps a core for its event loop on this 2-core box, the Ray replica has
num_cpus=1). The load is http_mixed_vs_single's mixed one (100 tasks, concurrency 32),
through Ray's HTTP proxy for Ray. Phases alternate between the two (rounds), so both see
the same outside load; the ratio is Ray's throughput over plain's, per round and pooled.
Target: >= 0.9. Ray's own processes (GCS, raylet, controller, proxy) share the 2 cores.

    .venv/bin/python -m bench.ray_vs_plain --rounds 6 --seconds 8
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import emit, predict_factory, ratio_summary, run, run_load, short_texts, task_check
from bench.http_servers import HOST, bitfit_server, build_store, free_port, minilm_spec, task_name

TARGET = 0.9


def start_ray(store: Path) -> str:
    """One Serve replica on a local Ray; returns its proxy's URL."""
    import ray
    from ray import serve

    from server.process.ray_app import BitfitReplica

    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": HOST, "port": port})
    app = BitfitReplica.options(num_replicas=1, ray_actor_options={"num_cpus": 1}).bind({"store": str(store), "device": "cpu"})
    serve.run(app, name="bitfit", route_prefix="/")
    return f"http://{HOST}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args(argv)

    spec = minilm_spec()
    store = build_store(spec, args.tasks)
    texts, every = short_texts(), [task_name(i) for i in range(args.tasks)]
    plain = bitfit_server(store)
    try:
        plain.start()
        urls = {"ray": start_ray(store)}
        plain.wait_ready()
        urls["plain"] = plain.url
        for url in urls.values():
            run(run_load(url, predict_factory(texts, every, seed=99), concurrency=args.concurrency,
                         max_requests=args.warmup, max_seconds=120))
        rounds: list[dict[str, float]] = []
        totals = {kind: [0, 0.0] for kind in urls}
        for r in range(args.rounds):
            rounds.append({})
            for kind in (("plain", "ray") if r % 2 == 0 else ("ray", "plain")):
                make = predict_factory(texts, every, seed=r)
                result = run(run_load(urls[kind], make, concurrency=args.concurrency, max_requests=100_000,
                                      max_seconds=args.seconds, check=task_check(make)))
                totals[kind][0] += result.ok
                totals[kind][1] += result.seconds
                rounds[-1][kind] = result.ok / result.seconds
                emit({"bench": "ray_vs_plain", "round": r, "server": kind, **result.summary()})
        rps = {kind: ok / seconds for kind, (ok, seconds) in totals.items()}
        per_round = ratio_summary([(r["ray"], r["plain"]) for r in rounds])
        emit({"bench": "ray_vs_plain", "summary": True, "tasks": args.tasks, "concurrency": args.concurrency,
              "rounds": args.rounds, "seconds_per_phase": args.seconds, "plain_rps": round(rps["plain"], 2),
              "ray_rps": round(rps["ray"], 2), "pooled_ratio": round(rps["ray"] / rps["plain"], 4), **per_round,
              "target": TARGET, "met": per_round["median_round_ratio"] >= TARGET, "cpus": os.cpu_count()})
    finally:
        plain.stop()
        import ray

        if ray.is_initialized():
            from ray import serve

            serve.shutdown()
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
