"""The answers of GET /stats and /stats/tasks (server/http/routes/stats.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ServerStats(BaseModel):
    catalog_tasks: int = Field(description="Tasks in the store's catalog, resident or not.")
    resident_tasks: int = Field(description="Tasks a bias-table slot serves.")
    pinned_versions: int = Field(description="Kept versions resident for ?version=N requests.")
    unhealthy_tasks: int = Field(description="Tasks whose stored version cannot be served.")
    slots: int = Field(description="Bias-table slots (the resident budget).")
    free_slots: int
    hits: int = Field(description="Requests for a task that was resident.")
    misses: int = Field(description="Requests that had to load their task first.")
    evictions: int = Field(description="Resident slots given to another task.")
    cold_loads: int = Field(description="Tasks loaded into a slot.")
    load_failures: int = Field(description="Loads that found the stored version unservable.")
    cold_load_p50_ms: float | None = Field(description="Median cold load since start (None: none yet).")
    generation: int = Field(description="The newest store change-log entry this server applied.")
    sync_ok: bool = Field(description="The store watcher's last poll reached the store and none is stalled.")
    sync_problem: str | None = Field(description="Why it did not, else None.")
    load: str = Field(description='"eager" or "lazy" (BITFIT_LOAD).')
    store_writable: bool
    queue_rows: int = Field(description="Rows waiting for the inference worker.")
    clock_s: float = Field(description="The server's monotonic clock, for rates between two reads.")


class TaskStats(BaseModel):
    name: str
    tracked: bool = Field(description="False: unknown, outside the key's scope, or past BITFIT_METRICS_MAX_TASKS.")
    requests: int | None = Field(None, description="Predict requests naming the task since start, every status.")
    errors: int | None = Field(None, description="Those answered with an error.")
    latency_count: int | None = Field(None, description="Successful requests timed.")
    p50_ms: float | None = Field(None, description="Median latency (ms), interpolated in its histogram bucket.")
    p95_ms: float | None = None


class TaskStatsList(BaseModel):
    tasks: list[TaskStats] = Field(description="One entry per asked name, in the asked order (duplicates once).")
    max_tracked: int = Field(description="BITFIT_METRICS_MAX_TASKS: tasks with figures of their own.")
    clock_s: float = Field(description="The server's monotonic clock, for rates between two reads.")
