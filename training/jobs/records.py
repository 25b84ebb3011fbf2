"""The queue's records: a job, an uploaded file and a claim's lease, as plain dataclasses.

A record is stored as the JSON of ``to_dict`` (what the HTTP API returns as is) and read
back with ``from_dict``, which ignores fields it does not know (a newer writer's).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

STATUSES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")
PUBLISH_POLICIES = ("always", "if_better", "never")
DEFAULT_MAX_ATTEMPTS = 3


def new_id(kind: str, now: float | None = None) -> str:
    """``<kind>-`` + 24 hex: 12 of milliseconds since the epoch (ids sort by creation), 12 random."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{kind}-{ms:012x}{os.urandom(6).hex()}"


def _from_dict(cls, raw: dict):
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class JobRecord:
    id: str  # "job-" + 24 hex
    task: str
    status: str
    created_at: float
    config: dict  # the validated JobConfig as a dict
    files: dict[str, str]  # {"train": file_id, "validation"?: ..., "test"?: ...}
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0  # claims so far
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    worker: str | None = None  # the lease holder while running
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    progress: dict = field(default_factory=dict)  # epoch, epochs, step, total_steps, eta_s, elapsed_s
    learning_rate: float | None = None
    metrics: list[dict] = field(default_factory=list)  # one per evaluation
    result: dict | None = None  # published, version, decision, scores
    error: str | None = None
    idempotency_key: str | None = None
    publishing: dict | None = None  # {"attempt", "worker", "at"}: a publish began (exactly-once check)

    def to_dict(self) -> dict:
        return {"object": "job", **dataclasses.asdict(self)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_dict(cls, raw: dict) -> JobRecord:
        return _from_dict(cls, raw)

    @classmethod
    def from_json(cls, body: bytes) -> JobRecord:
        return cls.from_dict(json.loads(body))


@dataclass
class FileRecord:
    id: str  # "file-" + 24 hex
    filename: str
    bytes: int
    sha256: str
    created_at: float
    rows: int
    columns: list[str]

    def to_dict(self) -> dict:
        return {"object": "file", **dataclasses.asdict(self)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_json(cls, body: bytes) -> FileRecord:
        return _from_dict(cls, json.loads(body))


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one job: valid while the record still names this worker and attempt."""

    job_id: str
    worker: str
    attempt: int
    lease_s: float
