"""A million tasks behind one backbone: start-up, memory, Zipf traffic, listing, 404s, uploads.

One folder store of ``--tasks`` MiniLM tasks (``--distinct`` of them with bias sets of their
own, the rest hard links: bench/capacity_store.py), served by one ``bitfit serve`` process
(lazy loading, ``--slots`` resident slots), real uvicorn, the packaged MiniLM, ONNX Runtime
when installed. Every figure is a ratio or a latency measured side by side in this run:

- ``startup``: process start to /readyz 200 at ``--tasks`` vs a 1,000-task store (rounds alternate);
- ``listing``: GET /tasks?limit=100 at random cursors, GET /tasks/{unknown}, a predict 404 (p50/p99);
- ``zipf``: c=32, one short text a request, tasks drawn Zipf(1.1) over the whole catalog, vs the same
  load on one task, alternating rounds; the server's RSS, resident count and the rounds' hit ratio
  (``--prewarm N`` first requests the N most popular tasks once: the steady state of a long run);
- ``cold``: one request at a time, a never-used task vs a hot one, alternating (p50/p99 of each);
- ``touch``: a server of its own with ``--touch-slots`` slots, ``--touch`` distinct tasks in a row
  at c=8, RSS sampled every 10%: it must stay flat once the slots are full;
- ``uploads``: ``--uploads`` new versions through POST /tasks in a row (max latency: no stall above 1 s),
  and upload-then-predict (upload to servable) p50, at ``--tasks`` vs 1,000 tasks.

    .venv/bin/python -m bench.capacity --tasks 1000000 --distinct 100000 --slots 50000

Raw JSON lines go to stdout (and ``--out``); docs/BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.capacity_store import build, task_name  # noqa: E402
from bench.http_load import emit, run, run_load, short_texts  # noqa: E402
from bench.http_servers import CACHE, bitfit_server, minilm_spec  # noqa: E402


def percentiles(values: list[float]) -> dict:
    values = sorted(values)
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))], 2)  # noqa: E731
    return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(values[-1], 2), "n": len(values)}


def timed(client: httpx.Client, method: str, path: str, **kw) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    response = client.request(method, path, **kw)
    return 1000 * (time.perf_counter() - t0), response


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def serve(store: Path, slots: int):
    return bitfit_server(store, extra=["--load", "lazy"], env={
        "BITFIT_WARM_UP_TASKS": "0", "BITFIT_MAX_RESIDENT_TASKS": str(slots), "BITFIT_MAX_QUEUE_ROWS": "4096",
    })


def startup(big: Path, small: Path, slots: int, rounds: int) -> None:
    times: dict[str, list[float]] = {"big": [], "small": []}
    for _ in range(rounds):
        for label, store in (("small", small), ("big", big)):
            with serve(store, slots) as server:
                times[label].append(server.wait_ready())
    emit({"phase": "startup", "seconds_big": [round(t, 2) for t in times["big"]], "seconds_1000": [round(t, 2) for t in times["small"]],
          "ratio": round(statistics.median(times["big"]) / statistics.median(times["small"]), 3)})


def listing(url: str, n: int, samples: int) -> None:
    rng = random.Random(1)
    from server.http.paging import encode_cursor

    with httpx.Client(base_url=url, timeout=30) as client:
        pages, unknown, missing = [], [], []
        for _ in range(samples):
            cursor = encode_cursor(task_name(rng.randrange(n)))
            ms, r = timed(client, "GET", "/tasks", params={"limit": 100, "cursor": cursor})
            assert r.status_code == 200 and len(r.json()["tasks"]) <= 100, r.text
            pages.append(ms)
            ms, r = timed(client, "GET", f"/tasks/nope-{rng.randrange(10**9)}")
            assert r.status_code == 404
            unknown.append(ms)
            ms, r = timed(client, "POST", f"/predict/nope-{rng.randrange(10**9)}", json={"inputs": "x"})
            assert r.status_code == 404
            missing.append(ms)
    emit({"phase": "listing", "tasks_page_100": percentiles(pages), "get_unknown_task": percentiles(unknown),
          "predict_unknown_task": percentiles(missing)})


def counter(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def prewarm(server, ranks: np.ndarray, count: int) -> None:
    """Request the ``count`` most popular tasks once (c=8): the slots then hold the head of the
    distribution, as they would after a long run (a 20 s round is a few thousand requests)."""
    order = [int(i) for i in ranks[:count]]
    make = lambda i: ("POST", f"/predict/{task_name(order[i])}", {"inputs": "warm"})  # noqa: E731
    t0 = time.perf_counter()
    result = run(run_load(server.url, make, concurrency=8, max_requests=len(order), max_seconds=3600))
    emit({"phase": "zipf_prewarm", "tasks": len(order), "seconds": round(time.perf_counter() - t0, 1),
          "failures": dict(result.failures), "ready": httpx.get(server.url + "/readyz").json()["tasks"]})


def zipf(server, n: int, seconds: float, rounds: int, warm: int = 0) -> None:
    texts = short_texts()
    rng = np.random.default_rng(2)
    weights = np.arange(1, n + 1, dtype=np.float64) ** -1.1
    ranks = rng.permutation(n)  # rank k -> task ranks[k]
    draws = np.searchsorted(np.cumsum(weights / weights.sum()), rng.random(1 << 20))
    picks = ranks[np.minimum(draws, n - 1)]
    if warm:
        prewarm(server, ranks, warm)
    loads = {
        "zipf": lambda i: ("POST", f"/predict/{task_name(int(picks[i % len(picks)]))}", {"inputs": texts[i % len(texts)]}),
        "one_task": lambda i: ("POST", f"/predict/{task_name(0)}", {"inputs": texts[i % len(texts)]}),
    }
    offset = 0
    for r in range(rounds):
        out = {"phase": "zipf", "round": r}
        for label, make in loads.items():
            shifted = (lambda m, o: lambda i: m(i + o))(make, offset)
            hits, misses = counter(server.url, "bitfit_task_hits_total"), counter(server.url, "bitfit_task_misses_total")
            result = run(run_load(server.url, shifted, concurrency=32, max_requests=10**7, max_seconds=seconds))
            offset += result.requests
            hits, misses = counter(server.url, "bitfit_task_hits_total") - hits, counter(server.url, "bitfit_task_misses_total") - misses
            lat = result.latencies_ms or [0.0]
            out[label] = {"rps": round(result.ok / result.seconds, 1), "p50_ms": _ms(result.percentile(50)),
                          "p99_ms": _ms(result.percentile(99)), "mean_ms": _ms(statistics.fmean(lat)), "max_ms": _ms(max(lat)),
                          "seconds": round(result.seconds, 2), "client_cpu_s": round(result.client_cpu_s, 2),
                          "failures": dict(result.failures),
                          "hit_ratio": round(hits / max(1.0, hits + misses), 4)}
        out["ratio"] = round(out["zipf"]["rps"] / out["one_task"]["rps"], 3)
        out["rss_mb"], out["ready"] = server.rss_mb(), httpx.get(server.url + "/readyz").json()
        emit(out)


def cold(url: str, n: int, samples: int, start: int) -> None:
    cold_ms, hot_ms = [], []
    with httpx.Client(base_url=url, timeout=30) as client:
        timed(client, "POST", f"/predict/{task_name(0)}", json={"inputs": "warm"})
        for i in range(samples):
            ms, r = timed(client, "POST", f"/predict/{task_name(start + i * 7919 % (n - start))}", json={"inputs": "a dull film"})
            assert r.status_code == 200, r.text
            cold_ms.append(ms)
            ms, r = timed(client, "POST", f"/predict/{task_name(0)}", json={"inputs": "a dull film"})
            hot_ms.append(ms)
    emit({"phase": "cold", "cold": percentiles(cold_ms), "hot": percentiles(hot_ms),
          "cold_minus_hot_p50_ms": round(statistics.median(cold_ms) - statistics.median(hot_ms), 2),
          "cold_minus_hot_p99_ms": round(percentiles(cold_ms)["p99_ms"] - percentiles(hot_ms)["p99_ms"], 2)})


def touch(server, n: int, count: int) -> None:
    order = random.Random(3).sample(range(n), count)
    samples = []
    for part in range(10):
        chunk = order[part * count // 10 : (part + 1) * count // 10]
        make = (lambda c: lambda i: ("POST", f"/predict/{task_name(c[i])}", {"inputs": "fine"}))(chunk)
        result = run(run_load(server.url, make, concurrency=8, max_requests=len(chunk), max_seconds=3600))
        samples.append({"touched": (part + 1) * count // 10, "rss_mb": server.rss_mb(), "failures": dict(result.failures),
                        "resident": httpx.get(server.url + "/readyz").json()["tasks"]})
    emit({"phase": "touch", "samples": samples})


def uploads(url: str, count: int, label: str) -> None:
    from bias_store.format import dumps
    from tests.helpers import random_bias_set

    spec = minilm_spec()
    files = [dumps(random_bias_set(spec, f"upload-{i}", seed=i)) for i in range(8)]
    upload_ms, servable_ms = [], []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(count):
            name = f"upload-{i % 8}"
            t0 = time.perf_counter()
            r = client.post("/tasks", files={"file": ("f.safetensors", files[i % 8])}, data={"name": name})
            assert r.status_code == 201, r.text
            upload_ms.append(1000 * (time.perf_counter() - t0))
            if i % 10 == 0:  # upload to servable: the next request answers with the new version
                p = client.post(f"/predict/{name}", json={"inputs": "x"})
                assert p.json()["version"] == r.json()["version"]
                servable_ms.append(1000 * (time.perf_counter() - t0))
    emit({"phase": "uploads", "store": label, "upload": percentiles(upload_ms), "upload_to_servable": percentiles(servable_ms),
          "stalls_over_1s": sum(ms > 1000 for ms in upload_ms)})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--distinct", type=int, default=100_000)
    p.add_argument("--slots", type=int, default=50_000, help="resident slots (0: the server's default budget)")
    p.add_argument("--touch", type=int, default=40_000)
    p.add_argument("--touch-slots", type=int, default=10_000)
    p.add_argument("--uploads", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--prewarm", type=int, default=0, help="zipf: request this many of the most popular tasks first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--phases", default="startup,listing,cold,zipf,touch,uploads")
    p.add_argument("--store-dir", type=Path, default=CACHE / "capacity")
    args = p.parse_args(argv)
    phases = set(args.phases.split(","))
    spec = minilm_spec()
    t0 = time.perf_counter()
    big = build(args.store_dir / f"store-{args.tasks}", spec, args.tasks, min(args.distinct, args.tasks))
    small = build(args.store_dir / "store-1000", spec, 1000, 1000)
    emit({"phase": "build", "seconds": round(time.perf_counter() - t0, 1), "tasks": args.tasks, "distinct": args.distinct})
    if "startup" in phases:
        startup(big, small, args.slots, args.rounds)
    with serve(big, args.slots) as server:
        server.wait_ready(timeout=900)
        if "listing" in phases:
            listing(server.url, args.tasks, 300)
        if "cold" in phases:
            cold(server.url, args.tasks, 300, start=args.tasks // 2)
        if "zipf" in phases:
            slots = httpx.get(server.url + "/readyz").json()["task_slots"]  # --slots 0: the server's default budget
            zipf(server, args.tasks, args.seconds, args.rounds, warm=min(args.prewarm, slots))
        if "uploads" in phases:
            uploads(server.url, args.uploads, f"{args.tasks} tasks")
    if "uploads" in phases:
        with serve(small, args.slots) as server:
            server.wait_ready()
            uploads(server.url, args.uploads, "1000 tasks")
    if "touch" in phases:
        with serve(big, args.touch_slots) as server:
            server.wait_ready(timeout=900)
            touch(server, args.tasks, args.touch)


if __name__ == "__main__":
    main()
