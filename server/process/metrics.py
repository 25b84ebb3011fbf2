"""Prometheus metrics on a registry per app (two apps in one process never collide).

The ``task`` label is bounded: up to ``max_tasks`` served task names get their own label
value, any more are counted under ``other``, and requests for tasks that do not exist
are counted under ``unknown`` (so a client cannot grow the label set by inventing
names). A deleted task's slot and series are freed (``forget_task``).
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:  # the catalog's own modules import this one (validation timings)
    from server.catalog.catalog import TaskCatalog
    from server.catalog.sync import StoreSync
    from server.serving.admission import TokenBudget
OTHER = "other"
UNKNOWN = "unknown"

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Every 4 rows up to the default batch of 32: where batches form under load shows (bench/http_onnx.py).
_ROWS = (1, 2, 4, 8, 12, 16, 20, 24, 28, 31, 32, 48, 64, 128, 256)
_FORWARDS = (1, 2, 3, 4, 6, 8, 16)
_REQUEST_LABELS = ("task", "status", "route", "method", "protocol")
_PREDICT = {"route": "/predict/{task}", "method": "POST", "protocol": "native"}
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

    def named(self) -> list[str]:
        """The task names with a label of their own (at most ``max_tasks``)."""
        with self._lock:
            return list(self._named)

    def forget(self, task: str) -> bool:
        """Free ``task``'s slot; True if it had one."""
        with self._lock:
            if task in self._named:
                self._named.discard(task)
                return True
            return False


class Metrics:
    def __init__(self, max_task_labels: int = 100) -> None:
        disable_created_metrics()  # no `_created` series beside every counter (process-wide, idempotent)
        self.registry = CollectorRegistry(auto_describe=True)
        self.task_label = TaskLabels(max_task_labels)
        # (task label, status, route, method, protocol) -> (its requests counter, its latency histogram)
        self._children: dict[tuple, tuple] = {}
        r = self.registry
        # The collectors the global registry would have (process_*, python_info,
        # python_gc_*), on this app's own registry, and what build is running.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Gauge("bitfit_build_info", "Always 1; the labels say what is running.", ["version", "python", "torch"],
              registry=r).labels(*build_labels()).set(1)
        # A predict counts once per task it names, any other checked route once with task="" (server/http/counting.py).
        self.requests = Counter("bitfit_requests", "Requests by route, method, protocol (native, hf, oip), status and predict task.",
                                _REQUEST_LABELS, registry=r)
        self.rows = Counter("bitfit_rows", "Rows (inputs) run through the encoder.", registry=r)
        self.tokens = Counter("bitfit_tokens", "Real tokens run through the encoder (padding not counted).", registry=r)
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
            "bitfit_batch_padding_ratio", "Share of a batch's computed tokens that are padding, after any split or packing.",
            buckets=_SHARE, registry=r,
        )
        self.queue_depth = Gauge("bitfit_queue_depth_rows", "Rows waiting for the inference worker.", registry=r)
        self.cold_load = Histogram(
            "bitfit_cold_load_seconds", "Loading a task that was not resident: store read, validation, slot write.",
            buckets=_LATENCY, registry=r,
        )
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

    def observe_request(self, tasks: list[str], status: int, seconds: float, loaded: Callable[[str], bool],
                        route: dict[str, str] = _PREDICT) -> None:
        """Count one predict request under each distinct task it named (bounded labels)."""
        children = self._children  # one read: forget_task replaces the dict, never edits it
        for task in dict.fromkeys(tasks):
            label = self.task_label(task) if loaded(task) else UNKNOWN
            key = (label, status, route["route"], route["method"], route["protocol"])
            pair = children.get(key)
            if pair is None:  # labels() checks and hashes its arguments: once per series, not per request
                pair = children[key] = (self.requests.labels(task=label, status=str(status), **route),
                                        self.request_latency.labels(label))
            pair[0].inc()
            if status == 200:
                pair[1].observe(seconds)

    def observe_call(self, route: dict[str, str], status: int) -> None:
        """Count one request that is not a predict (uploads, /tasks reads, OIP metadata)."""
        self.requests.labels(task="", status=str(status), **route).inc()

    def track_budget(self, budget: TokenBudget) -> None:
        """The admission budget's tokens in flight, read at scrape time."""
        Gauge("bitfit_admitted_tokens", "Tokens admitted and not yet answered (BITFIT_MAX_INFLIGHT_TOKENS bounds it).",
              registry=self.registry).set_function(lambda: budget.in_flight)
        Gauge("bitfit_admitted_tokens_limit", "The admission budget (BITFIT_MAX_INFLIGHT_TOKENS).",
              registry=self.registry).set(budget.max_tokens)

    def track_sync(self, sync: StoreSync) -> None:
        """The store generation this server has applied, and how stale that may be."""
        self.registry.register(_SyncCollector(sync))

    def forget_task(self, task: str) -> None:
        """A task is no longer served: free its label slot and drop its series."""
        if not self.task_label.forget(task):
            return
        # dict() copies in one step under the GIL: the event loop may be adding a child meanwhile.
        self._children = {k: v for k, v in dict(self._children).items() if k[0] != task}
        for metric, names in ((self.requests, _REQUEST_LABELS), (self.request_latency, ("task",))):
            series = {tuple(sample.labels[n] for n in names)
                      for family in metric.collect() for sample in family.samples if sample.labels.get("task") == task}
            for labels in series:
                metric.remove(*labels)

    def track_catalog(self, catalog: TaskCatalog) -> None:
        """Residency and catalog figures, read from the catalog at scrape time (no bookkeeping here)."""
        catalog.stats.on_load = self.cold_load.observe
        self.registry.register(_CatalogCollector(catalog))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CatalogCollector:
    """The catalog's counts and counters as metrics (one lock-free read per scrape)."""

    def __init__(self, catalog: TaskCatalog) -> None:
        self.catalog = catalog

    def describe(self) -> list:
        return []  # unchecked: its families are yielded at collect time

    def collect(self):
        from server.catalog.views import counts

        c, stats = counts(self.catalog), self.catalog.stats
        row = self.catalog.engine.row_bytes
        gauges = {
            "bitfit_tasks_loaded": ("Tasks a bias-table slot serves (resident).", c["resident_tasks"]),
            "bitfit_catalog_tasks": ("Tasks in the store's catalog, resident or not.", c["catalog_tasks"]),
            "bitfit_task_slots": ("Bias-table slots (the resident budget).", c["slots"]),
            "bitfit_task_slots_free": ("Bias-table slots free now.", c["free_slots"]),
            "bitfit_pinned_versions": ("Kept versions resident for ?version=N requests.", c["pinned_versions"]),
            "bitfit_resident_bytes": ("Bytes of bias-table rows in use (heads not included).", row * (c["slots"] - c["free_slots"])),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        counters = {
            "bitfit_task_hits": ("Requests for a task that was resident.", stats.hits),
            "bitfit_task_misses": ("Requests for a task that had to be loaded (cold loads, shared ones counted once).", stats.misses),
            "bitfit_evictions": ("Resident slots given to another task.", stats.evictions),
            "bitfit_cold_loads": ("Tasks loaded into a slot.", stats.loads),
            "bitfit_load_failures": ("Loads that found the stored version unservable.", stats.load_failures),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(name, doc, value=value)


class _SyncCollector:
    """The watcher's generation, whether its last poll reached the store, and for how long it has not.

    ``bitfit_store_sync_age_seconds`` is 0 while the last poll succeeded; while polls fail it
    is the time since a scrape last saw one succeed (or since this collector started), so
    an alert on it fires after a store outage of that length.
    """

    def __init__(self, sync: StoreSync) -> None:
        self.sync, self.last_ok = sync, time.monotonic()

    def describe(self) -> list:
        return []

    def collect(self):
        now = time.monotonic()
        healthy = self.sync.error is None
        if healthy:
            self.last_ok = now
        yield GaugeMetricFamily("bitfit_store_generation", "The newest change-log generation this server applied.",
                                value=self.sync.generation.value)
        yield GaugeMetricFamily("bitfit_store_sync_ok", "1 when the watcher's last poll reached the store.", value=int(healthy))
        yield GaugeMetricFamily("bitfit_store_sync_age_seconds", "Seconds since the store was last seen reachable (0: now).",
                                value=now - self.last_ok)
