"""Training as a service: ``client.files.upload`` and ``client.jobs.create/get/list/cancel/wait``.

Every create sends an ``Idempotency-Key`` (a new one per call unless given), so the client may
retry it like a read: a retry after a lost answer gets the same job, never a second one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitfit_client._calls import Call
from bitfit_client.errors import Timeout
from bitfit_client.models import DataFile, Job, JobEvent, JobPage

if TYPE_CHECKING:
    from bitfit_client.client import Client

Source = str | Path | bytes
SPLITS = ("train", "validation", "test")


def _data(source: Source, default_name: str) -> tuple[str, bytes, str]:
    if isinstance(source, bytes):
        return (default_name, source, "application/octet-stream")
    path = Path(source)
    return (path.name, path.read_bytes(), "application/octet-stream")


def create_call(config: dict[str, Any], data: dict[str, Source], file_ids: dict[str, str], key: str,
                timeout: float | None) -> Call:
    headers = {"Idempotency-Key": key}
    if file_ids:
        body = {"config": config, "files": file_ids}
        return Call("POST", "/jobs", True, Job.model_validate, json=body, headers=headers, timeout=timeout)
    files = {split: _data(source, f"{split}.csv") for split, source in data.items()}
    return Call("POST", "/jobs", True, Job.model_validate, files=files, data={"config": json.dumps(config)},
                headers=headers, timeout=timeout)


class Files:
    """``client.files``: training files uploaded once, used by many jobs."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(self, source: Source, *, config: dict[str, Any] | None = None, timeout: float | None = None) -> DataFile:
        """Store a CSV/JSONL file (read as the trainer reads it; with ``config``, its columns checked too)."""
        data = {"config": json.dumps(config)} if config is not None else None
        return self._client._send(Call("POST", "/files", False, DataFile.model_validate, files={"file": _data(source, "train.csv")},
                                       data=data, timeout=timeout))

    def get(self, file_id: str) -> DataFile:
        return self._client._send(Call("GET", f"/files/{file_id}", True, DataFile.model_validate))


class Jobs:
    """``client.jobs``: create, follow and cancel training jobs."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, config: dict[str, Any], *, train: Source | None = None, validation: Source | None = None, test: Source | None = None,
        files: dict[str, str] | None = None, idempotency_key: str | None = None, timeout: float | None = None,
    ) -> Job:
        """Queue a job: upload ``train`` (+ ``validation``, ``test``) with it, or name ``files``
        uploaded before (``{"train": "file-..."}``). The data is checked before the job exists:
        a bad file raises InvalidDataFile naming the split, row and column."""
        data = {s: v for s, v in (("train", train), ("validation", validation), ("test", test)) if v is not None}
        if bool(data) == bool(files):
            raise ValueError("give the data (train=..., optionally validation=, test=) or files={'train': 'file-...'}, not both")
        key = idempotency_key or uuid.uuid4().hex
        return self._client._send(create_call(config, data, dict(files or {}), key, timeout))

    def get(self, job_id: str) -> Job:
        return self._client._send(Call("GET", f"/jobs/{job_id}", True, Job.model_validate))

    def page(self, *, limit: int = 20, after: str | None = None, status: str | None = None, task: str | None = None) -> JobPage:
        params = {k: v for k, v in (("limit", limit), ("after", after), ("status", status), ("task", task)) if v is not None}
        return self._client._send(Call("GET", "/jobs", True, JobPage.model_validate, params=params))

    def list(self, *, status: str | None = None, task: str | None = None, page_size: int = 20) -> Iterator[Job]:
        """Every job (in ``status``, for ``task``), newest first, a page at a time."""
        after = None
        while True:
            page = self.page(limit=page_size, after=after, status=status, task=task)
            yield from page.data
            if not page.has_more:
                return
            after = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        return self._client._send(Call("POST", f"/jobs/{job_id}/cancel", True, Job.model_validate))

    def events(self, job_id: str, after: int = 0) -> list[JobEvent]:
        return self._client._send(Call("GET", f"/jobs/{job_id}/events", True,
                                       lambda b: [JobEvent.model_validate(e) for e in b["data"]], params={"after": after}))

    def artifacts(self, job_id: str) -> list[str]:
        return self._client._send(Call("GET", f"/jobs/{job_id}/artifacts", True, lambda b: [a["name"] for a in b["data"]]))

    def artifact(self, job_id: str, name: str) -> bytes:
        return self._client._send(Call("GET", f"/jobs/{job_id}/artifacts/{name}", True, lambda content: content, raw=True))

    def wait(
        self, job_id: str, progress: Callable[[JobEvent], None] | None = None, *, timeout: float | None = None,
        poll_s: float = 1.0,
    ) -> Job:
        """Follow the job until it ends (succeeded, failed or cancelled) and return it; ``progress``
        gets every event (status, progress, metrics, message) once, in order. ``timeout``: raise
        Timeout after this many seconds (the job goes on)."""
        end = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events(job_id, after=seen):
                seen = max(seen, event.seq)
                if progress is not None:
                    progress(event)
            job = self.get(job_id)
            if job.done:
                for event in self.events(job_id, after=seen):  # the last status event may land after the record
                    seen = event.seq
                    if progress is not None:
                        progress(event)
                return job
            if end is not None and time.monotonic() >= end:
                raise Timeout(f"job {job_id} is still {job.status} after {timeout:g} s")
            time.sleep(poll_s if end is None else max(0.0, min(poll_s, end - time.monotonic())))
