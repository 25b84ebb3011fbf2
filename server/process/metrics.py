"""Prometheus metrics on a registry per app (two apps in one process never collide).

The ``task`` label is bounded: up to ``max_tasks`` served task names get their own label
value, any more are counted under ``other``, and requests for tasks that do not exist
are counted under ``unknown`` (so a client cannot grow the label set by inventing
names). A deleted task's slot and series are freed (``forget_task``).
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

OTHER = "other"
UNKNOWN = "unknown"

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_FORWARDS = (1, 2, 3, 4, 6, 8, 16)
_SHARE = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def build_labels() -> tuple[str, str, str]:
    """(package version, Python version, torch version) of this process."""

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return version("bitfit-serve"), platform.python_version(), version("torch")


class TaskLabels:
    """Maps task names to a bounded set of label values."""

    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self._named: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, task: str) -> str:
        if task in self._named:
            return task
        with self._lock:
            if task in self._named:
                return task
            if len(self._named) < self.max_tasks and task not in (OTHER, UNKNOWN):
                self._named.add(task)
                return task
        return OTHER

    def forget(self, task: str) -> bool:
        """Free ``task``'s slot; True if it had one."""
        with self._lock:
            if task in self._named:
                self._named.discard(task)
                return True
            return False


class Metrics:
    def __init__(self, max_task_labels: int = 100) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.task_label = TaskLabels(max_task_labels)
        r = self.registry
        # The collectors the global registry would have (process_*, python_info,
        # python_gc_*), on this app's own registry, and what build is running.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Gauge("bitfit_build_info", "Always 1; the labels say what is running.", ["version", "python", "torch"],
              registry=r).labels(*build_labels()).set(1)
        self.requests = Counter("bitfit_requests", "Predict requests by task and HTTP status.", ["task", "status"], registry=r)
        self.request_latency = Histogram(
            "bitfit_request_latency_seconds", "Predict latency from accepted to answered, by task.", ["task"],
            buckets=_LATENCY, registry=r,
        )
        self.queue_wait = Histogram(
            "bitfit_queue_wait_seconds", "Time a request waits before its first row enters a batch.", buckets=_LATENCY, registry=r
        )
        self.inference = Histogram(
            "bitfit_inference_seconds", "Duration of one batch's inference (all tasks in it, every forward).", buckets=_LATENCY,
            registry=r,
        )
        self.batch_rows = Histogram("bitfit_batch_rows", "Rows per batch.", buckets=_ROWS, registry=r)
        self.batch_tasks = Histogram("bitfit_batch_tasks", "Distinct tasks per batch.", buckets=_ROWS, registry=r)
        self.batch_forwards = Histogram(
            "bitfit_batch_forwards", "Forward passes per batch (rows grouped by length, BITFIT_SPLIT_OVERHEAD_TOKENS).",
            buckets=_FORWARDS, registry=r,
        )
        self.batch_padding = Histogram(
            "bitfit_batch_padding_ratio", "Share of a batch's computed tokens that are padding, after any split.",
            buckets=_SHARE, registry=r,
        )
        self.queue_depth = Gauge("bitfit_queue_depth_rows", "Rows waiting for the inference worker.", registry=r)
        self.tasks_loaded = Gauge("bitfit_tasks_loaded", "Tasks registered in the engine.", registry=r)
        self.errors = Counter("bitfit_errors", "Error answers of every route, by their JSON error code.", ["code"], registry=r)
        self.client_disconnects = Counter(
            "bitfit_client_disconnects", "Requests whose client hung up before its body arrived.", registry=r
        )
        self.rejected = Counter("bitfit_rejected_requests", "Requests refused before inference, by reason.", ["reason"], registry=r)
        self.upload_seconds = Histogram(
            "bitfit_upload_seconds", "Upload/replace handling: validation, store write and registration.",
            buckets=_LATENCY, registry=r,
        )
        self.validation_seconds = Histogram(
            "bitfit_validation_seconds", "Bias-set validation alone.", buckets=_LATENCY, registry=r
        )
        self.upload_rejections = Counter(
            "bitfit_upload_rejections", "Uploads refused, by the validator's reason.", ["reason"], registry=r
        )

    def observe_request(self, tasks: list[str], status: int, seconds: float, loaded: Callable[[str], bool]) -> None:
        """Count one predict request under each distinct task it named (bounded labels)."""
        for task in dict.fromkeys(tasks):
            label = self.task_label(task) if loaded(task) else UNKNOWN
            self.requests.labels(label, str(status)).inc()
            if status == 200:
                self.request_latency.labels(label).observe(seconds)

    def forget_task(self, task: str) -> None:
        """A task is no longer served: free its label slot and drop its series."""
        if not self.task_label.forget(task):
            return
        for metric in (self.requests, self.request_latency):
            for labels in list(metric._metrics):  # noqa: SLF001 - prometheus_client has no public listing
                if labels[0] == task:
                    metric.remove(*labels)

    def track_tasks(self, count: Callable[[], int]) -> None:
        """Read the loaded-task count at scrape time (always current, no bookkeeping)."""
        self.tasks_loaded.set_function(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
