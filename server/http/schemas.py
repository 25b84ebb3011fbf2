"""Pydantic models of the HTTP edge (requests, responses, OpenAPI examples). Nothing else.

Inside the server, the engine's dataclasses (Prediction, TaskHandle) and the store's
TaskRecord are used; the routes convert at the edge.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bias_store.kinds import InputKind, Pooling, ProblemType


class TextPair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    text_pair: str


Inputs = str | list[str | TextPair]

_INPUTS_DOC = "One text, a list of texts, or a list of {text, text_pair} pairs (for pair tasks)."
_TOP_K_DOC = "Return only the k best labels in `scores` (sorted, best first)."
_ALL_DOC = "Return every label's score in `scores` (ignored when top_k is set)."


class HFParameters(BaseModel):
    """Hugging Face text-classification parameters (what `InferenceClient.text_classification` sends)."""

    model_config = ConfigDict(extra="forbid")
    top_k: int | None = Field(None, ge=1, le=1000, description="Same as the top-level `top_k` (this one wins).")
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="How logits become scores; default: the task's own (softmax, sigmoid for multi-label, none for regression)."
    )
    truncation: bool = Field(
        True, description="false: an input longer than the backbone's maximum length is refused (422) instead of cut."
    )


class PredictOptions(BaseModel):
    top_k: int | None = Field(None, ge=1, le=1000, description=_TOP_K_DOC)
    return_all_scores: bool = Field(True, description=_ALL_DOC)
    parameters: HFParameters | None = Field(None, description="The Hugging Face request's parameters (docs/API.md).")

    @property
    def k(self) -> int | None:
        """The effective top_k: the HF parameter, else the top-level one."""
        if self.parameters is not None and self.parameters.top_k is not None:
            return self.parameters.top_k
        return self.top_k

    @property
    def function(self) -> str | None:
        return self.parameters.function_to_apply if self.parameters is not None else None

    @property
    def truncation(self) -> bool:
        return self.parameters.truncation if self.parameters is not None else True


class PredictRequest(PredictOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": "a gorgeous, witty film"},
                {"inputs": ["a gorgeous, witty film", "dull and far too long"], "top_k": 1},
                {"inputs": [{"text": "A man is playing a guitar.", "text_pair": "Someone plays music."}]},
                {"inputs": "a gorgeous, witty film", "parameters": {"top_k": 1, "function_to_apply": "softmax"}},
            ]
        },
    )
    inputs: Inputs = Field(description=_INPUTS_DOC)


class PredictItem(PredictOptions):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="The task's name.", max_length=200)
    version: int | None = Field(None, ge=1, description="A kept version to serve instead of the current one.")
    inputs: Inputs = Field(description=_INPUTS_DOC)


class MultiPredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"task": "sentiment", "inputs": "a gorgeous, witty film"},
                        {"task": "topic", "inputs": ["stocks fell sharply on Monday"], "top_k": 2},
                    ]
                }
            ]
        },
    )
    items: list[PredictItem] = Field(min_length=1, description="Items for any mix of tasks, answered in order.")


class PredictionOut(BaseModel):
    label: str = Field(description="The best label (for regression: the output's name).")
    score: float = Field(description="Its probability (softmax, or sigmoid for multi-label; the value for regression).")
    scores: dict[str, float] | None = Field(None, description="Label -> score, best first (see top_k, return_all_scores).")
    truncated: bool = Field(description="True when the input was cut to the backbone's maximum length.")
    labels: list[str] | None = Field(None, description="Multi-label tasks: every label whose score reaches its threshold "
                                     "(chosen on validation at training time; 0.5 when the task has none).")


class LabelScore(BaseModel):
    """One element of the Hugging Face answer (``?format=hf``)."""

    label: str
    score: float


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "sentiment",
                    "version": 3,
                    "predictions": [
                        {"label": "positive", "score": 0.97, "scores": {"positive": 0.97, "negative": 0.03}, "truncated": False}
                    ],
                }
            ]
        }
    )
    task: str
    version: int = Field(description="The task version that computed every prediction of this response.")
    predictions: list[PredictionOut]


class MultiPredictResponse(BaseModel):
    results: list[PredictResponse] = Field(description="One result per request item, in order.")


class TaskInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "sentiment", "version": 2, "labels": ["negative", "positive"],
                    "problem_type": "single_label_classification", "inputs": "text", "pooling": "cls",
                    "bias_sites": "all", "base_model": "sentence-transformers/all-MiniLM-L6-v2", "created_at": "2026-11-26T10:00:00+00:00",
                    "size_bytes": 137000, "sha256": "9f2c...", "versions": [1, 2], "loaded": True,
                    "training": {"epochs": 16, "val_accuracy": 0.79},
                }
            ]
        }
    )
    name: str
    version: int = Field(description="The version now served.")
    labels: list[str]
    problem_type: ProblemType
    inputs: InputKind
    pooling: Pooling
    bias_sites: str
    base_model: str
    created_at: str
    size_bytes: int = Field(description="Size of the stored bias-set file.")
    sha256: str
    versions: list[int] = Field(description="Every kept version, oldest first.")
    loaded: bool = Field(description="Whether this server serves it (false if this backbone rejects the stored file).")
    training: dict[str, Any] = Field(default_factory=dict, description="Free-form training summary from the file.")


class UnhealthyTask(BaseModel):
    name: str
    reason: str = Field(description="Why the store's current version cannot be read or served (the log has more).")


class TaskSummary(BaseModel):
    name: str
    version: int = Field(description="The task's current stored version.")
    sha256: str
    state: str = Field(description="stored, loading, resident, evicted or unservable (docs/ARCHITECTURE.md, the task life cycle).")
    loaded: bool = Field(description="Whether a bias-table slot serves the current version now.")
    reason: str | None = Field(None, description="Why the task (or its newest version) cannot be served.")


class TaskList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tasks": [{"name": "sentiment", "version": 2, "sha256": "9f2c...", "state": "resident", "loaded": True}],
                    "next_cursor": "c2VudGltZW50", "catalog_tasks": 1, "unhealthy": [],
                }
            ]
        }
    )
    tasks: list[TaskSummary] = Field(description="One page, in name order; GET /tasks/{task} has a task's details.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")
    catalog_tasks: int | None = Field(description="Tasks in the whole catalog (every prefix); null for a key scoped to some tasks.")
    unhealthy: list[UnhealthyTask] = Field(
        default_factory=list, description="Up to 20 tasks this server cannot serve as stored, with why; every other task serves."
    )


class UploadResponse(TaskInfo):
    num_params: int = Field(description="Parameters in the bias set (biases + head).")
    tensor_bytes: int = Field(description="Raw tensor bytes the task costs in memory.")
    generation: int = Field(
        description="The store change log entry of this upload: send it back as X-Bitfit-Min-Generation "
        "to any replica to read this write there."
    )


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 1}, {}]})
    version: int | None = Field(None, ge=1, description="Version to serve again; default: the one before the current.")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Ready(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready", "store": "ok", "generation": 42, "backbone": "sentence-transformers/all-MiniLM-L6-v2",
                    "model_type": "bert",
                    "fingerprint": "3be1...", "device": "cpu", "dtype": "float32", "tasks": 12, "queue_rows": 0,
                }
            ]
        }
    )
    status: str = Field(description='"ready", or "degraded" while the store cannot be reached')
    store: str = Field(description='"ok", or "unreachable: <why>"')
    generation: int = Field(description="The newest store change log entry this server has applied.")
    backbone: str
    model_type: str
    fingerprint: str
    device: str
    dtype: str
    tasks: int = Field(description="Tasks loaded in the engine (with lazy loading, those used or warmed up so far).")
    catalog_tasks: int = Field(0, description="Tasks in the store's catalog, loaded or not.")
    task_slots: int = Field(0, description="Bias-table slots: the resident budget (BITFIT_MAX_RESIDENT_TASKS).")
    free_slots: int = Field(0, description="Slots free now; when none is, a load evicts the least recently used task.")
    load: str = Field("eager", description='"eager": every task loaded at start-up; "lazy": on first use (BITFIT_LOAD).')
    queue_rows: int
    store_writable: bool = Field(True, description="False while the store cannot be written: mutations answer 503.")
    unhealthy_tasks: dict[str, str] = Field(
        default_factory=dict, description="Up to 20 tasks skipped because their stored files cannot be served, with why. "
        "Empty unless the request may read every task: no predict keys and no keys file, or a key of unrestricted scope."
    )
    unhealthy_count: int = Field(0, description="How many tasks are skipped as unservable (always shown).")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["task_not_found"])
    message: str = Field(examples=["task 'sentimnt' is not loaded; known tasks: sentiment"])


class ErrorBody(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(extra="allow")
    error: ErrorDetail
