"""Where a running server's CPU goes under load: per thread from /proc, per stage from py-spy.

Two windows of the same load (wrk, or ``bench.http_load``'s generator when wrk is missing):

1. **Threads**: ``/proc/PID/task/*/stat`` before and after: the CPU seconds of every thread
   (the event loop, the inference worker, ONNX Runtime's own intra-op threads, which
   py-spy cannot see, the tokenizer pool, the store watcher), per request. No sampler
   runs in this window, so it is the server's real cost.
2. **Stages**: ``py-spy record --native`` on the Python threads, each sample put in one
   stage by its frames (``STAGES``, first match from the leaf up); samples of a thread
   waiting (a condition, a queue, epoll with nothing to do) are idle and left out. The
   sampler slows the server, so its shares, not its rates, are what it reports.

    python -m bench.profile_split --port 8000 --seconds 10      # against a running server
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (stage, substrings of a frame); the first stage one of whose substrings a frame holds,
# scanning from the leaf to the root, takes the sample.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("GC", ("gc_collect_main",)),
    ("forward (ONNX Runtime)", ("onnxruntime",)),
    ("tokenization", ("tokenizers", "tokenization_utils", "engine/inputs.py:encode", "inputs.py:encode", "tokenize_rows",
                      "Engine.encode", "serving/tokenize.py")),
    ("pydantic", ("pydantic", "fastapi/_compat", "_validate_value", "serialize_response")),
    ("JSON", ("orjson", "json/", "body_shape.py", "json_bytes.py", "Request.json")),
    ("metrics", ("prometheus_client", "process/metrics.py")),
    ("logging", ("logging/", "access_log.py", "process/logs.py")),
    ("tracing (OpenTelemetry)", ("opentelemetry", "serving/spans.py")),
    ("thread hops", ("anyio", "run_in_threadpool", "to_thread", "concurrent/futures", "call_soon_threadsafe")),
    ("batcher (queue, wake-ups, settling)", ("serving/batcher.py", "threading.py")),
    ("engine (collate, gather, heads, answers)", ("engine/",)),
    ("predictor (limits, catalog, admission)", ("serving/predictor.py", "serving/admission.py", "server/catalog/")),
    ("middleware (ASGI)", ("http/middleware.py", "request_id.py", "http/access_log.py", "starlette/middleware")),
    ("routing, dependencies, route code", ("fastapi/", "starlette/", "server/http/")),
    ("HTTP parse/write (uvicorn, httptools)", ("uvicorn/", "httptools", "write (libc", "writev (libc", "send (libc", "read (libc")),
    ("event loop (uvloop, asyncio)", ("asyncio/", "uvloop", "epoll")),
]
IDLE_PY = ("Condition.wait", "_worker (concurrent", "Event.wait", "Thread._wait_for", "select (selectors", "queue.py", "sleep")
WAIT_LEAF = ("(libc.so.6)", "epoll_pwait", "epoll_wait", "futex", "poll (libc", "select (libc", "nanosleep")


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return "other"


def is_idle(frames: list[str]) -> bool:
    """A thread blocked with nothing to do: its leaf is a libc wait and its innermost Python
    frame a waiting call (or the event loop's run with the leaf in epoll)."""
    leaf = frames[-1]
    if not any(w in leaf for w in WAIT_LEAF) or "onnxruntime" in leaf:
        return False
    python = [f for f in frames if ".py:" in f]
    inner = python[-1] if python else ""
    if "epoll" in leaf and ("Runner.run" in inner or "run_forever" in inner or "run_until_complete" in inner):
        return True
    return any(m in inner for m in IDLE_PY) and not any("onnxruntime" in f for f in frames)


def split(raw: str) -> tuple[dict[str, collections.Counter], dict[str, str]]:
    """(thread name -> stage -> busy samples, thread id -> name) from py-spy's ``--format raw`` output."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    names: dict[str, str] = {}
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            tid, _, thread = frames[0][len("thread ("):].partition("): ")
            thread = "AnyIO worker thread" if "AnyIO worker" in thread else thread
            names[tid] = thread
            frames = frames[1:]
        if frames and not is_idle(frames):
            out[thread][stage_of(frames)] += int(count)
    return out, names


def thread_cpu(pid: int) -> dict[str, tuple[str, float]]:
    """thread id -> (its comm name, CPU seconds so far), for every thread of ``pid``."""
    out: dict[str, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[task.name] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def by_thread(before: dict, after: dict, names: dict[str, str], requests: int) -> dict[str, float]:
    """CPU ms per request of each thread, named as py-spy names it (native threads: ``comm``),
    ONNX Runtime's intra-op pool and the like summed under one name."""
    out: dict[str, float] = collections.defaultdict(float)
    for tid, (comm, seconds) in after.items():
        used = seconds - before.get(tid, (comm, 0.0))[1]
        if used > 0:
            out[names.get(tid, f"native: {comm}")] += 1000 * used / requests
    return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def load_command(url: str, seconds: float, concurrency: int, lua: Path) -> list[str]:
    if shutil.which("wrk"):
        return ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds:g}s", "-s", str(lua), url]
    return [sys.executable, "-m", "bench.profile_split", "--drive", url, "--seconds", str(seconds), "--concurrency", str(concurrency)]


def answered(output: str) -> int:
    """Requests answered by the load: wrk's script line, or the driver's JSON line."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            record = json.loads(line)
            return int(record.get("ok", record.get("requests", 0)))
    return 0


def drive(url: str, seconds: float, concurrency: int) -> None:
    """The bench's own closed loop, when wrk is not installed: the wrk check's texts and 100 tasks."""
    from bench.http_load import predict_factory, run, run_load
    from bench.http_servers import task_name
    from bench.plain_ceiling import texts_of

    result = run(run_load(url, predict_factory(texts_of("wrk"), [task_name(i) for i in range(100)], seed=1),
                          concurrency=concurrency, max_requests=10**7, max_seconds=seconds))
    print(json.dumps(result.summary()))


def profile(pid: int, url: str, seconds: float, concurrency: int, rate: int = 100) -> dict:
    """Window 1: per-thread CPU per request; window 2: py-spy's stage shares per thread."""
    lua = Path(__file__).with_name("wrk_predict.lua")
    cpu0 = thread_cpu(pid)
    out = subprocess.run(load_command(url, seconds, concurrency, lua), capture_output=True, text=True).stdout
    cpu1, n = thread_cpu(pid), max(answered(out), 1)
    raw = Path(tempfile.mkstemp(prefix="pyspy-", suffix=".txt")[1])
    load = subprocess.Popen(load_command(url, seconds + 2, concurrency, lua), stdout=subprocess.DEVNULL)
    try:
        time.sleep(1)
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        subprocess.run([spy, "record", "--native", "--threads", "-r", str(rate), "-d", str(int(seconds)), "-p", str(pid),
                        "-f", "raw", "-o", str(raw)], capture_output=True, check=True)
    finally:
        load.wait()
    stages, names = split(raw.read_text())
    raw.unlink(missing_ok=True)
    per_thread = by_thread(cpu0, cpu1, names, n)
    return {"requests": n, "seconds": seconds, "cpu_ms_per_request_by_thread": per_thread,
            "cpu_ms_per_request": round(sum(per_thread.values()), 3),
            "busy_samples_by_thread_and_stage": {t: dict(c.most_common()) for t, c in stages.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int)
    p.add_argument("--pid", type=int, help="the server's pid (default: whoever listens on --port)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--drive", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.drive:
        drive(args.drive, args.seconds, args.concurrency)
        return 0
    pid = args.pid or int(subprocess.check_output(["pgrep", "-f", "--", f"--port {args.port}( |$)"]).split()[0])
    print(json.dumps({"bench": "profile_split", "port": args.port, "wrk": bool(shutil.which("wrk")),
                      **profile(pid, f"http://127.0.0.1:{args.port}", args.seconds, args.concurrency)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
