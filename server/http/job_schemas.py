"""Pydantic models of the jobs and files routes (training as a service), for requests and OpenAPI.

The answers are the queue's records as they are (training/jobs/records.py ``to_dict``): these
models describe them and keep every field a newer queue adds (``extra="allow"``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Split = Literal["train", "validation", "test"]
FILE_ID = r"^file-[0-9a-f]{24}$"
JOB_ID = r"^job-[0-9a-f]{24}$"

_CONFIG_EXAMPLE = {
    "task": "acme.sentiment", "text_column": "text", "label_column": "label", "method": "auto",
    "hyperparameters": {"learning_rate": "auto", "epochs": 2}, "publish": "if_better",
}


class JobFromFiles(BaseModel):
    """POST /jobs as JSON: a config and the ids of files uploaded before (POST /files)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"config": _CONFIG_EXAMPLE, "files": {"train": "file-0190c3a1f2e34b5c6d7e8f90", "validation": "file-0190c3a1f2e34b5c6d7e8f91"}},
    ]})
    config: dict[str, Any] = Field(description="The job's config (docs/TRAINING.md lists its fields; unknown ones are refused).")
    files: dict[Split, str] = Field(description="File ids by split; `train` is required.")


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")  # the record as the queue writes it, every field kept


class FileOut(_Record):
    object: Literal["file"] = "file"
    id: str = Field(description="`file-` and 24 hex digits.")
    filename: str
    bytes: int
    sha256: str
    created_at: float = Field(description="Unix seconds.")
    rows: int
    columns: list[str]


class JobOut(_Record):
    object: Literal["job"] = "job"
    id: str = Field(description="`job-` and 24 hex digits, sortable by creation.")
    task: str = Field(description="The task the job trains and publishes.")
    status: str = Field(description="validating_files, queued, running, succeeded, failed or cancelled.")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    config: dict[str, Any]
    files: dict[str, str]
    attempts: int = Field(description="Claims by a worker so far (a worker that died counts).")
    max_attempts: int
    cancel_requested: bool = False
    progress: dict[str, Any] = Field(default_factory=dict, description="epoch, epochs, step, total_steps, eta_s, elapsed_s.")
    learning_rate: float | None = Field(None, description="The rate used (the one chosen when `auto`).")
    metrics: list[dict[str, Any]] = Field(default_factory=list,
                                          description="One entry per evaluation (epoch, step, train_loss, validation).")
    result: dict[str, Any] | None = Field(None, description="published, version, generation (the publish's change-log entry: "
                                          "`X-Bitfit-Min-Generation` on another replica), the publish decision and its scores.")
    error: str | None = Field(None, description="Why the job failed, for a person to act on.")


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobOut] = Field(description="One page, newest first.")
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null on the last one.")


class JobEvent(_Record):
    seq: int = Field(description="1, 2, ...: pass the last one seen as `after` (or `Last-Event-ID` on the stream).")
    created_at: float
    level: str = Field(description="info, warning or error.")
    type: str = Field(description="status, progress, metrics or message.")
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobEvent]


class Artifact(BaseModel):
    name: str = Field(description="report.json, learning_curves.png, confusion_matrix.png, ...")
    bytes: int


class ArtifactList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Artifact]
