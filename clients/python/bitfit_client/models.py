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
