"""The Hugging Face and Open Inference Protocol routes vs the native one, under the same load.

One ``bitfit serve`` (packaged MiniLM, CPU) with 100 tasks; a closed-loop load of one short
text per request (concurrency 32), every request for one of the 100 tasks drawn at random
(the same draws and texts in every mode), in phases of equal length interleaved round by
round (the order rotates) so that outside load hits every mode alike:

- **native**: ``POST /predict/{task}`` ``{"inputs": text}``;
- **hf**: ``POST /predict/{task}?format=hf`` ``{"inputs": text, "parameters": {}}`` (what
  huggingface_hub's InferenceClient sends), answered as ``[[{label, score}, ...]]``;
- **oip**: ``POST /v2/models/{task}/infer`` with a one-element BYTES ``text`` tensor (JSON).

Target: hf / native and oip / native throughput >= 0.95 (median of the per-round ratios;
pooled ratios too). Every answer is checked to be for the task asked::

    .venv/bin/python -m bench.http_protocols                       # the real run
    .venv/bin/python -m bench.http_protocols --seconds 2 --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import emit, ratio_summary, run, run_load, short_texts
from bench.http_servers import add_server_options, bitfit_server, build_store, minilm_spec, server_env, task_name

TARGET = 0.95
MODES = ("native", "hf", "oip")


def factory(mode: str, texts: list[str], tasks: list[str], seed: int):
    """Request i of ``mode``, and a check of its answer (None when right)."""
    rng = random.Random(seed)
    picks = [rng.randrange(len(tasks)) for _ in range(1 << 16)]

    def task(i: int) -> str:
        return tasks[picks[i % len(picks)]]

    def make(i: int) -> tuple[str, str, dict]:
        text = texts[i % len(texts)]
        if mode == "native":
            return "POST", f"/predict/{task(i)}", {"inputs": text}
        if mode == "hf":
            return "POST", f"/predict/{task(i)}?format=hf", {"inputs": text, "parameters": {}}
        return "POST", f"/v2/models/{task(i)}/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}

    def check(i: int, status: int, body: bytes) -> str | None:
        try:
            answer = json.loads(body)
        except ValueError:
            return "bad_json"
        if mode == "native":
            ok = answer.get("task") == task(i) and len(answer.get("predictions") or []) == 1
        elif mode == "hf":
            ok = isinstance(answer, list) and len(answer) == 1 and {"label", "score"} <= set(answer[0][0])
        else:
            ok = answer.get("model_name") == task(i) and answer["outputs"][0]["shape"] == [1]
        return None if ok else "wrong_answer"

    return make, check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP throughput of the HF and OIP routes vs the native one.")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each phase")
    parser.add_argument("--requests", type=int, default=100_000, help="cap per phase")
    parser.add_argument("--rounds", type=int, default=8, help="each round runs every mode")
    parser.add_argument("--warmup", type=int, default=300)
    add_server_options(parser)
    args = parser.parse_args(argv)

    store = build_store(minilm_spec(), args.tasks)
    texts, tasks = short_texts(), [task_name(i) for i in range(args.tasks)]
    totals = {mode: [0, 0.0, 0.0] for mode in MODES}  # ok requests, seconds, server CPU seconds
    rounds: list[dict[str, float]] = []
    server = bitfit_server(store, extra=args.server_arg, env=server_env(args.server_env))
    with server:
        server.wait_ready()
        for mode in MODES:  # warm every route
            make, _ = factory(mode, texts, tasks, seed=99)
            run(run_load(server.url, make, concurrency=args.concurrency, max_requests=args.warmup // len(MODES), max_seconds=60))
        for r in range(args.rounds):
            order = MODES[r % 3:] + MODES[: r % 3]
            rounds.append({})
            for mode in order:
                make, check = factory(mode, texts, tasks, seed=r)  # the same draws in every mode
                cpu0 = server.cpu_seconds()
                result = run(run_load(server.url, make, concurrency=args.concurrency, max_requests=args.requests,
                                      max_seconds=args.seconds, check=check))
                totals[mode][0] += result.ok
                totals[mode][1] += result.seconds
                totals[mode][2] += server.cpu_seconds() - cpu0
                rounds[-1][mode] = result.ok / result.seconds
                emit({"bench": "http_protocols", "round": r, "mode": mode, "concurrency": args.concurrency, **result.summary()})
    rps = {mode: ok / seconds for mode, (ok, seconds, _) in totals.items()}
    cpu_ms = {mode: 1000 * cpu / max(ok, 1) for mode, (ok, _, cpu) in totals.items()}
    summary = {"bench": "http_protocols", "summary": True, "tasks": args.tasks, "concurrency": args.concurrency,
               "rounds": args.rounds, "seconds_per_phase": args.seconds, **{f"{m}_rps": round(rps[m], 2) for m in MODES},
               **{f"{m}_server_cpu_ms_per_request": round(cpu_ms[m], 3) for m in MODES}}
    met = True
    for mode in ("hf", "oip"):
        per_round = ratio_summary([(r[mode], r["native"]) for r in rounds])
        summary[f"{mode}_pooled_ratio"] = round(rps[mode] / rps["native"], 4)
        # what a CPU-bound server would show without outside contention: native CPU / mode CPU per request
        summary[f"{mode}_cpu_ratio"] = round(cpu_ms["native"] / cpu_ms[mode], 4)
        summary.update({f"{mode}_{k}": v for k, v in per_round.items()})
        met = met and per_round["median_round_ratio"] >= TARGET
    emit({**summary, "target": TARGET, "met": met, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
