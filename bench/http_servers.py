"""Server processes and bias-set stores for the ``bench/http_*`` benchmarks.

Every server listens on 127.0.0.1 only, runs in its own process group, logs to a file
under CACHE, and is killed on exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
HOST = "127.0.0.1"
CACHE = Path(os.environ.get("BITFIT_BENCH_CACHE", Path(tempfile.gettempdir()) / "bitfit-bench"))


def task_name(i: int) -> str:
    return f"task-{i:04d}"


# -- stores of random-but-valid MiniLM bias sets -----------------------------------------
def minilm_spec():
    """The spec (and fingerprint) of the packaged MiniLM, exactly as the server computes it."""
    from engine.backbone import load_backbone

    return load_backbone(None, device="cpu").spec


def bias_set_bytes(spec, name: str, seed: int) -> bytes:
    from bias_store.format import dumps
    from tests.helpers import random_bias_set

    return dumps(random_bias_set(spec, name, seed=seed))


def build_store(spec, n_tasks: int, *, fresh: bool = False) -> Path:
    """A FilesystemStore folder holding ``task-0000`` ... with random valid bias sets.

    Cached under CACHE by fingerprint and size (building 1,000 tasks takes a while); a
    ``fresh`` store is a private copy that a benchmark may upload into.
    """
    import shutil

    from bias_store.backends.folder import FilesystemStore

    root = CACHE / f"store-{spec.fingerprint[:12]}-{n_tasks}"
    marker = root / "BENCH_COMPLETE"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        from bias_store.validate import validate_upload

        store = FilesystemStore(root, keep_versions=2)
        for i in range(n_tasks):
            store.put(validate_upload(bias_set_bytes(spec, task_name(i), seed=i), spec))
        marker.write_text(str(n_tasks))
    if not fresh:
        return root
    copy = Path(tempfile.mkdtemp(prefix="bitfit-store-", dir=CACHE))
    shutil.copytree(root, copy, dirs_exist_ok=True)
    return copy


# -- server processes ---------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server in a child process (its own process group), logging to a file; killed on exit."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict | None = None) -> None:
        self.name, self.cmd, self.port = name, cmd, port
        self.url = f"http://{HOST}:{port}"
        CACHE.mkdir(parents=True, exist_ok=True)
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=CACHE)[1])
        self.env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> "ServerProcess":
        log = open(self.log_path, "wb")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        return self

    def wait_ready(self, path: str = "/readyz", timeout: float = 300.0, interval: float = 0.02) -> float:
        """Seconds from start() until ``path`` answers 200 (polled every ``interval``)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self.log_path}\n{self.tail()}")
                try:
                    if client.get(self.url + path).status_code == 200:
                        return time.perf_counter() - self.started_at
                except httpx.HTTPError:
                    pass
                time.sleep(interval)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; log: {self.log_path}\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """CPU (user + system) the server process has used so far: per request, this is a
        cost that contention from other processes barely changes, unlike wall throughput."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except (OSError, AttributeError):
            return None
        return None

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout``; the log is kept unless it
        exited cleanly (BITFIT_BENCH_KEEP_LOGS=1 keeps every log)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            return  # keep the log of a server that would not stop
        # uvicorn re-raises the SIGTERM it handled, so a graceful exit reads -SIGTERM.
        if self.proc.returncode in (0, -signal.SIGTERM) and not os.environ.get("BITFIT_BENCH_KEEP_LOGS"):
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_all(servers: list[ServerProcess]) -> None:
    """Start every server, then wait for each to be ready: their start-ups overlap."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready()


def bitfit_server(store: Path, port: int | None = None, extra: list[str] | None = None,
                  env: dict | None = None, launcher: list[str] | None = None) -> ServerProcess:
    """``bitfit serve`` on the packaged MiniLM, CPU, fp32 (``--backbone`` left at its default).

    ``launcher`` replaces the ``bitfit`` executable (same arguments); so does the
    BITFIT_BENCH_SERVE_CMD variable, to benchmark another build of the server.
    """
    port = port or free_port()
    exe = Path(PYTHON).with_name("bitfit")
    base = launcher or os.environ.get("BITFIT_BENCH_SERVE_CMD", "").split() or (
        [str(exe)] if exe.exists() else [PYTHON, "-m", "server.process.cli"])
    cmd = base + ["--log-level", "WARNING", "serve", "--host", HOST, "--port", str(port), "--store", str(store),
                  "--device", "cpu"] + (extra or [])
    return ServerProcess("bitfit", cmd, port, env)


def naive_server(store: Path, port: int | None = None, env: dict | None = None) -> ServerProcess:
    port = port or free_port()
    cmd = [PYTHON, "-m", "bench.naive_server", "--port", str(port), "--store", str(store)]
    return ServerProcess("naive", cmd, port, env)


def plain_http_server(port: int | None = None) -> ServerProcess:
    """The ceiling's plain loop behind a minimal HTTP app (bench/plain_http.py): no tasks."""
    port = port or free_port()
    return ServerProcess("plain_http", [PYTHON, "-m", "bench.plain_http", "--port", str(port)], port)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The flags every HTTP benchmark takes to vary the server it starts."""
    parser.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                        help="extra `bitfit serve` argument, e.g. --server-arg=--dtype=float32 (repeatable)")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for the server processes, e.g. OMP_NUM_THREADS=1 (repeatable)")


def server_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--server-env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


# -- what the server says about itself ---------------------------------------------------
def histograms(url: str, contains: str = "bitfit_") -> dict[str, float]:
    """``*_sum``/``*_count`` of the server's histograms named with ``contains`` from /metrics
    (empty if absent).

    Differences between two snapshots give, e.g., the mean rows and distinct tasks per
    batch of one load phase, which is what explains its throughput.
    """
    try:
        text = httpx.get(url + "/metrics", timeout=60, trust_env=False).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or contains not in line:
            continue
        name, _, value = line.rpartition(" ")
        if name.endswith(("_sum", "_count")) and "{" not in name:
            out[name] = float(value)
    return out


def histogram_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per histogram: mean of the observations made between two snapshots."""
    means: dict[str, float] = {}
    if not before:
        return means  # a failed snapshot would turn the means into lifetime means
    for name in after:
        if name.endswith("_sum"):
            base = name[: -len("_sum")]
            count = after.get(base + "_count", 0) - before.get(base + "_count", 0)
            if count > 0:
                mean = (after[name] - before.get(name, 0)) / count
                if base.endswith("_seconds"):  # report milliseconds
                    base, mean = base[: -len("_seconds")] + "_ms", 1000 * mean
                means["mean_" + base] = round(mean, 2)
    return means
