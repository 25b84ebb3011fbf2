"""Training as a service: 20 small jobs at once on one `bitfit serve` with 2 training workers.

One ``bitfit serve`` (packaged MiniLM, CPU, the demo task preloaded) with ``--train-workers 2``
(its worker processes at nice 10, as ``make serve`` runs them). Three figures:

1. **Submit to servable**: 20 small jobs (``--rows`` reviews each, one epoch, a fixed learning
   rate) are submitted at once through ``POST /jobs``; for each, the seconds from its submit
   until ``POST /predict/<its task>`` answers with the version it published (p50, max), and
   the makespan of all 20.
2. **Serving while training**: closed-loop predict load on the demo task (``--concurrency``)
   in windows of ``--window-s``: before the jobs (idle), in the first ``--windows`` windows
   after the submit (the workers training), and after the last job (idle). The ratio of the
   training windows' throughput to the idle ones' (goal >= 0.8: the workers run at nice 10,
   one thread each). The jobs finish without load after those windows: a saturating closed
   loop leaves niced workers next to no CPU, which is the point, but not a makespan to quote.
3. **Joint vs one by one** (``--joint K``, a separate run without predict load): the same
   jobs on a fresh server whose workers train one job at a time (``--train-joint 1``) and
   on one whose workers claim up to K queued jobs that train alike and train them in one
   joint run (``--train-joint K``); rounds alternate the order, and the ratio of the
   makespans (one by one / joint) is taken per round.

    .venv/bin/python -m bench.jobs --out bench/results/jobs_cpu.jsonl
    .venv/bin/python -m bench.jobs --joint 5 --out bench/results/jobs_cpu.jsonl
    .venv/bin/python -m bench.jobs --jobs 4 --window-s 5        # a smoke run

On a shared machine the absolute figures move with the other load: quote the ratio, which
is measured in one run, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, environment, setup  # noqa: E402
from bench.http_load import predict_factory, run, run_load, short_texts  # noqa: E402
from bench.http_servers import REPO, bitfit_server  # noqa: E402

DEMO = REPO / "examples" / "sentiment" / "sentiment.safetensors"
DATA = REPO / "examples" / "data" / "rt_train.csv"


def job_data(rows: int, seed: int) -> bytes:
    """``rows`` demo reviews, half of each label (the demo file is sorted by label), seeded."""
    lines = DATA.read_text().splitlines()
    header, body = lines[0], lines[1:]
    positive = [line for line in body if line.endswith(",positive")]
    negative = [line for line in body if line.endswith(",negative")]
    half = rows // 2
    start = (seed * half) % (min(len(positive), len(negative)) - half)
    return ("\n".join([header, *positive[start:start + half], *negative[start:start + half]]) + "\n").encode()


def submit_all(url: str, n: int, rows: int) -> dict[str, tuple[str, float]]:
    """Submit ``n`` jobs at once (one thread each); job id -> (task, submit time)."""
    submitted: dict[str, tuple[str, float]] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        task = f"bench-job-{i:02d}"
        config = {"task": task, "hyperparameters": {"epochs": 1, "learning_rate": 0.003, "batch_size": 16, "max_length": 64}}
        started = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            answer = client.post(f"{url}/jobs", data={"config": json.dumps(config)},
                                 files={"train": ("train.csv", job_data(rows, i))})
        answer.raise_for_status()
        with lock:
            submitted[answer.json()["id"]] = (task, started)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return submitted


def follow(url: str, submitted: dict[str, tuple[str, float]], stop: threading.Event, out: dict[str, dict]) -> None:
    """Poll the jobs; a succeeded one is servable when a predict answers with its version."""
    with httpx.Client(timeout=60) as client:
        while len(out) < len(submitted) and not stop.is_set():
            for job_id, (task, started) in submitted.items():
                if job_id in out:
                    continue
                job = client.get(f"{url}/jobs/{job_id}").json()
                if job["status"] in ("failed", "cancelled"):
                    out[job_id] = {"task": task, "status": job["status"], "error": job.get("error")}
                elif job["status"] == "succeeded":
                    version = job["result"]["version"]
                    answer = client.post(f"{url}/predict/{task}", json={"inputs": "a gorgeous, witty film"})
                    if answer.status_code == 200 and answer.json()["version"] == version:
                        out[job_id] = {"task": task, "status": "succeeded", "servable_s": time.perf_counter() - started,
                                       "started_at": job["started_at"], "finished_at": job["finished_at"]}
            time.sleep(0.5)


def load_window(url: str, seconds: float, concurrency: int, seed: int) -> dict:
    result = run(run_load(url, predict_factory(short_texts(), ["sentiment"], seed), concurrency=concurrency,
                          max_requests=10**9, max_seconds=seconds))
    return result.summary()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=32, help="training rows per job")
    parser.add_argument("--concurrency", type=int, default=4, help="predict load's concurrent connections")
    parser.add_argument("--window-s", type=float, default=20.0, help="each throughput window")
    parser.add_argument("--windows", type=int, default=3, help="throughput windows while training (and half as many idle, "
                        "before and after)")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="give up on the jobs after this long")
    parser.add_argument("--server-arg", action="append", default=[], help="one more `bitfit serve` flag (repeatable)")
    parser.add_argument("--joint", type=int, default=0, metavar="K",
                        help="also: the same jobs with workers at --train-joint 1 and K, rounds alternating (no predict load)")
    parser.add_argument("--joint-rounds", type=int, default=2)
    parser.add_argument("--out", help="append the JSON lines here too")
    args = parser.parse_args()
    setup(out=args.out)
    if args.joint:
        return joint_vs_one_by_one(args)
    emit("jobs_environment", **environment(), jobs=args.jobs, workers=args.workers, rows=args.rows, server_args=args.server_arg,
         concurrency=args.concurrency, window_s=args.window_s, windows=args.windows, loadavg_1m=os.getloadavg()[0])
    store = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    extra = ["--preload", str(DEMO), "--train-workers", str(args.workers), *args.server_arg]
    server = bitfit_server(store, extra=extra).start()
    try:
        server.wait_ready()
        time.sleep(10)  # the workers load their backbone at start: not part of the idle windows
        idle_n = max(1, args.windows // 2)
        idle = [load_window(server.url, args.window_s, args.concurrency, i) for i in range(idle_n)]
        t0 = time.perf_counter()
        submitted = submit_all(server.url, args.jobs, args.rows)
        submit_s = time.perf_counter() - t0
        done: dict[str, dict] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=follow, args=(server.url, submitted, stop, done), daemon=True)
        watcher.start()
        # Predict load only for the first windows: the ratio is what it costs serving; the jobs
        # then finish without it (a saturating closed loop would leave the niced workers idle).
        training = []
        for i in range(args.windows):
            window = load_window(server.url, args.window_s, args.concurrency, 10 + i)
            if len(done) < len(submitted):  # only windows the jobs trained through all along
                training.append(window)
        watcher.join(timeout=args.timeout_s)
        stop.set()
        makespan = time.perf_counter() - t0
        idle += [load_window(server.url, args.window_s, args.concurrency, 20 + i) for i in range(idle_n)]
        report(args, done, submit_s, makespan, idle, training)
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)
    return 0


def report(args, done: dict, submit_s: float, makespan: float, idle: list[dict], training: list[dict]) -> None:
    servable = sorted(r["servable_s"] for r in done.values() if r["status"] == "succeeded")
    failed = {r["task"]: r.get("error") for r in done.values() if r["status"] != "succeeded"}
    emit("jobs_submit_to_servable", jobs=args.jobs, load_windows_s=round(args.window_s * len(training), 1),
         succeeded=len(servable), failed=failed, submit_all_s=round(submit_s, 2),
         p50_s=round(statistics.median(servable), 1) if servable else None, max_s=round(servable[-1], 1) if servable else None,
         makespan_s=round(makespan, 1), jobs_per_minute=round(60 * len(servable) / makespan, 2))
    idle_rps = [w["throughput_rps"] for w in idle if w["throughput_rps"]]
    train_rps = [w["throughput_rps"] for w in training if w["throughput_rps"]]
    emit("jobs_serving_while_training", idle_windows=idle, training_windows=len(training),
         idle_rps=round(statistics.mean(idle_rps), 2) if idle_rps else None,
         training_rps=round(statistics.mean(train_rps), 2) if train_rps else None,
         ratio=round(statistics.mean(train_rps) / statistics.mean(idle_rps), 3) if idle_rps and train_rps else None,
         training_window_rps=train_rps, idle_window_rps=idle_rps,
         training_p50_ms=[w["p50_ms"] for w in training], idle_p50_ms=[w["p50_ms"] for w in idle],
         failures=sum(w["failed"] for w in [*idle, *training]), loadavg_1m=os.getloadavg()[0])


def makespan(args, joint: int) -> dict:
    """The jobs on a fresh server whose workers train ``joint`` at a time: seconds until all serve."""
    store = Path(tempfile.mkdtemp(prefix="bench-jobs-joint-"))
    extra = ["--preload", str(DEMO), "--train-workers", str(args.workers), "--train-joint", str(joint), *args.server_arg]
    server = bitfit_server(store, extra=extra).start()
    try:
        server.wait_ready()
        time.sleep(10)  # the workers' start
        t0 = time.perf_counter()
        submitted = submit_all(server.url, args.jobs, args.rows)
        done: dict[str, dict] = {}
        follow(server.url, submitted, threading.Event(), done)
        servable = sorted(r["servable_s"] for r in done.values() if r["status"] == "succeeded")
        return {"joint": joint, "makespan_s": round(time.perf_counter() - t0, 1), "succeeded": len(servable),
                "p50_s": round(statistics.median(servable), 1) if servable else None, "loadavg_1m": os.getloadavg()[0]}
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)


def joint_vs_one_by_one(args) -> int:
    emit("jobs_joint_environment", **environment(), jobs=args.jobs, workers=args.workers, rows=args.rows, joint=args.joint,
         rounds=args.joint_rounds, loadavg_1m=os.getloadavg()[0])
    pairs = []
    for r in range(args.joint_rounds):
        order = (1, args.joint) if r % 2 == 0 else (args.joint, 1)
        runs = {joint: makespan(args, joint) for joint in order}
        for run_ in runs.values():
            emit("jobs_joint_round", round=r, **run_)
        pairs.append(runs[1]["makespan_s"] / runs[args.joint]["makespan_s"])
    emit("jobs_joint_vs_one_by_one", measured=True, joint=args.joint, round_ratios=[round(p, 3) for p in pairs],
         median_ratio=round(statistics.median(pairs), 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
