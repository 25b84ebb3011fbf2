"""What the server answers, as pydantic models (unknown fields are kept, never refused)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer server may add fields


class Prediction(_Model):
    label: str
    score: float
    scores: dict[str, float] | None = None
    truncated: bool = False


class PredictResult(_Model):
    task: str
    version: int
    predictions: list[Prediction]


class TaskSummary(_Model):
    """One task of a listing page (``get_task`` has its details)."""

    name: str
    version: int
    sha256: str
    state: str  # stored, loading, resident, evicted or unservable
    loaded: bool
    reason: str | None = None


class TaskPage(_Model):
    tasks: list[TaskSummary]
    next_cursor: str | None = None


class TaskInfo(_Model):
    name: str
    version: int
    labels: list[str]
    problem_type: str
    inputs: str
    pooling: str
    bias_sites: str
    base_model: str
    created_at: str
    size_bytes: int
    sha256: str
    versions: list[int]
    loaded: bool
    training: dict[str, Any] = {}
    num_params: int | None = None  # upload and replace answers only
    tensor_bytes: int | None = None


class Ready(_Model):
    status: str
    backbone: str
    model_type: str
    fingerprint: str
    device: str
    dtype: str
    tasks: int
    queue_rows: int


class Job(_Model):
    """A training job (``client.jobs``): its status, progress, metrics and, once published, ``result``."""

    id: str
    task: str
    status: str  # validating_files, queued, running, succeeded, failed or cancelled
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    config: dict[str, Any] = {}
    files: dict[str, str] = {}
    attempts: int = 0
    max_attempts: int = 0
    cancel_requested: bool = False
    progress: dict[str, Any] = {}
    learning_rate: float | None = None
    metrics: list[dict[str, Any]] = []
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


class JobPage(_Model):
    data: list[Job]
    has_more: bool
    next_cursor: str | None = None


class JobEvent(_Model):
    seq: int
    created_at: float
    level: str
    type: str  # status, progress, metrics or message
    message: str
    data: dict[str, Any] = {}


class DataFile(_Model):
    """A training file uploaded with ``client.files.upload``: pass its ``id`` to ``jobs.create``."""

    id: str
    filename: str
    bytes: int
    sha256: str
    created_at: float
    rows: int
    columns: list[str]
