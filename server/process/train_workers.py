"""Training workers beside the server: ``bitfit jobs worker`` processes on the server's store.

``bitfit serve`` answers POST /jobs out of the box: the server queues a job in its store
(training/jobs/queue.py) and these processes claim, train and publish it; the server's store
watcher then serves the new version like any other upload. Each worker is its own process
(training never shares the server's GIL or its torch threads) at a low CPU priority (nice),
so that predict requests keep the CPU first. One that dies is started again (its job's lease
runs out and the queue gives the job to the next claim); stopping the server stops them.

With several servers on one store (replicas, Ray) only one place should run workers: set
``--train-workers 0`` on the servers and run ``bitfit jobs worker`` where training belongs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _lower_priority(nice: int, idle: bool) -> None:
    """In the child, before exec: lower its CPU priority (``idle``: Linux's SCHED_IDLE, CPU
    time only when the server's threads leave some); on Linux, end it if the server dies (a
    SIGKILLed server must not leave trainers behind)."""
    os.nice(nice)
    if idle and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


def worker_command(store: str, s3_endpoint_url: str | None = None, backbone: str | None = None,
                   extra: list[str] | None = None) -> list[str]:
    """The command line of one worker: the same ``bitfit`` this server runs, on its store."""
    command = [sys.executable, "-m", "server.process.cli", "jobs", "worker", "--store", store]
    if s3_endpoint_url:
        command += ["--s3-endpoint-url", s3_endpoint_url]
    if backbone:
        command += ["--backbone", backbone]
    return command + list(extra or [])


class TrainWorkers:
    """``count`` worker processes, kept running by one supervising thread until ``close``."""

    def __init__(self, command: list[str], count: int, nice: int = 10, threads: int = 0, idle: bool = False,
                 check_every_s: float = 1.0, restart_delay_s: float = 2.0) -> None:
        self.command, self.count, self.nice, self.idle = command, count, nice, idle
        self.env = {**os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}
        self.check_every_s, self.restart_delay_s = check_every_s, restart_delay_s
        self.processes: list[subprocess.Popen | None] = [None] * count
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="train-workers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self.processes if p is not None and p.poll() is None]

    def _spawn(self, slot: int) -> None:
        # Spawned by the supervising thread itself: PDEATHSIG follows the thread that forked.
        process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, env=self.env,
                                   preexec_fn=lambda: _lower_priority(self.nice, self.idle))
        with self._lock:
            self.processes[slot] = process
        log.info("training worker %d started (pid %d, nice %d%s)", slot, process.pid, self.nice, ", SCHED_IDLE" if self.idle else "")

    def _supervise(self) -> None:
        for slot in range(self.count):
            self._spawn(slot)
        while not self._stop.wait(self.check_every_s):
            for slot, process in enumerate(list(self.processes)):
                code = process.poll() if process is not None else None
                if code is None or self._stop.is_set():
                    continue
                log.warning("training worker %d (pid %d) exited with %s; starting another (its job is re-queued when "
                            "its lease runs out)", slot, process.pid, code)
                self.restarts += 1
                if self._stop.wait(self.restart_delay_s):
                    return
                self._spawn(slot)

    def close(self, timeout: float = 10.0) -> None:
        """SIGTERM each worker (it gives its job back), SIGKILL what is left after ``timeout``."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        with self._lock:
            running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            process.terminate()
        end = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("training worker pid %d did not stop in %.0fs; killed", process.pid, timeout)
                process.kill()
                process.wait()
