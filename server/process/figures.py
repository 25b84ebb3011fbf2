"""Per-task request figures read back from the app's own Prometheus metrics, as JSON.

The console's Tasks page shows each task's request count and latency quantiles without
parsing the Prometheus text in the browser. Only the tasks with a metrics label of their
own (at most BITFIT_METRICS_MAX_TASKS, server/process/metrics.py) have figures; the rest
are counted under "other" and answer ``tracked: false``. A read walks the labelled series
only, so its cost is bounded by that cap, never by the catalog's size.
"""

from __future__ import annotations

import math
from collections import defaultdict

from server.process.metrics import Metrics


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram [(upper bound, count)...], interpolated
    linearly inside its bucket as Prometheus' histogram_quantile does; None when empty."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # past the last finite bound: its bound is all that is known
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = upper, count
    return lower


def task_figures(metrics: Metrics, names: list[str]) -> list[dict]:
    """One entry per name: requests and errors since start, latency count and p50/p95 in ms."""
    tracked = set(metrics.task_label.named()) & set(names)
    requests: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    if tracked:
        for family in metrics.requests.collect():
            for sample in family.samples:
                task = sample.labels.get("task")
                if task in tracked and sample.name.endswith("_total"):
                    requests[task] += sample.value
                    if sample.labels.get("status") != "200":
                        errors[task] += sample.value
        for family in metrics.request_latency.collect():
            for sample in family.samples:
                task = sample.labels.get("task")
                if task in tracked and sample.name.endswith("_bucket"):
                    buckets[task].append((float(sample.labels["le"]), sample.value))
    out = []
    for name in names:
        if name not in tracked:
            out.append({"name": name, "tracked": False})
            continue
        series = buckets.get(name, [])
        p50, p95 = quantile(series, 0.5), quantile(series, 0.95)
        out.append({
            "name": name, "tracked": True, "requests": int(requests[name]), "errors": int(errors[name]),
            "latency_count": int(max((c for _, c in series), default=0)),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p95_ms": None if p95 is None else round(p95 * 1000, 3),
        })
    return out
