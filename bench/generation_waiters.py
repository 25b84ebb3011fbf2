"""Read-your-writes waiters: 200 clients wait on `GET /tasks/{t}?min_generation=<far future>` while one
client measures plain `GET /tasks/{t}` (target: p99 <= 100 ms, as without waiters), and the waiters'
bound: past BITFIT_MAX_GENERATION_WAITERS a waiter gets 503 at once.

The waiters loop for ``--seconds``: each request waits BITFIT_MIN_GENERATION_TIMEOUT_S (5 s) and gets
503, or is refused at once when the bound is full (``--max-waiters`` below ``--clients`` makes that
happen). The measuring client runs in its own process, one request at a time, every 20 ms.

    python -m bench.generation_waiters --clients 200 --max-waiters 150 --seconds 20 --out bench/results/generation_waiters.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import percentile
from bench.http_servers import HOST, PYTHON, REPO, bitfit_server

FAR = 10**12


def _measure(port: int, task: str, seconds: float, out) -> None:
    latencies, statuses = [], {}
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as c:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            status = c.get(f"/tasks/{task}").status_code
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
            time.sleep(0.02)
    out.put((latencies, statuses))


def _figures(latencies: list[float]) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(ms[-1], 2)}


def measured(port: int, task: str, seconds: float) -> tuple[multiprocessing.Process, multiprocessing.Queue]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_measure, args=(port, task, seconds, queue))
    proc.start()
    return proc, queue


async def waiters(port: int, task: str, clients: int, seconds: float) -> list[tuple[int, str, float]]:
    answers: list[tuple[int, str, float]] = []
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=30, limits=limits) as c:
        deadline = time.monotonic() + seconds

        async def one() -> None:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                r = await c.get(f"/tasks/{task}", params={"min_generation": FAR})
                code = r.json().get("error", {}).get("code", "") if r.status_code != 200 else ""
                answers.append((r.status_code, code, time.perf_counter() - start))
                if r.status_code == 503 and code == "overloaded":
                    await asyncio.sleep(0.2)  # as a client honouring Retry-After would, only shorter

        await asyncio.gather(*(one() for _ in range(clients)))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--max-waiters", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="bitfit-waiters-"))
    preload = REPO / "examples" / "sentiment" / "sentiment.safetensors"
    server = bitfit_server(store, extra=["--preload", str(preload), "--max-generation-waiters", str(args.max_waiters),
                                         "--backend", "torch"], launcher=[PYTHON, "-m", "server.process.cli"],
                           env={"PYTHONPATH": str(REPO)})
    with server:
        server.wait_ready()
        task = httpx.get(f"http://{HOST}:{server.port}/tasks").json()["tasks"][0]["name"]
        proc, queue = measured(server.port, task, 8.0)  # no waiters: the baseline
        baseline = queue.get()
        proc.join()
        proc, queue = measured(server.port, task, args.seconds - 2)
        answers = asyncio.run(waiters(server.port, task, args.clients, args.seconds))
        loaded = queue.get()
        proc.join()
    refused = [t for s, c, t in answers if s == 503 and c == "overloaded"]
    timed_out = [t for s, c, t in answers if s == 503 and c != "overloaded"]
    result = {
        "bench": "generation_waiters", "clients": args.clients, "max_waiters": args.max_waiters, "seconds": args.seconds,
        "get_task_alone": {**_figures(baseline[0]), "statuses": baseline[1]},
        "get_task_with_waiters": {**_figures(loaded[0]), "statuses": loaded[1]},
        "waiters_timed_out_503": _figures(timed_out), "waiters_refused_at_once_503": _figures(refused),
        "other_answers": sorted({(s, c) for s, c, _ in answers if s != 503}),
    }
    line = json.dumps(result)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(line + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
