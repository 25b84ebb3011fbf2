"""The job queue, kept in the bias store's objects (a folder or S3): no other service.

Layout under ``jobs/`` (plain JSON, readable with ls/cat or ``aws s3 ls``; docs/TRAINING.md)::

    records/<job_id>.json        the job record; every change is a compare-and-swap on it
    active/<job_id>              present from submit until the job ends: what claimers scan
    keys/<sha256 of the key>     {"key", "job"}: an idempotency key's job (create-if-absent)
    <job_id>/events/<seq>.json   one object per event (an append never rewrites anything)
    <job_id>/artifacts/<name>    report.json, learning_curves.png, ...
    files/<file_id>.json, files/<file_id>.data   an uploaded data file and its record

A claim is a lease: the record names the worker, the attempt and ``lease_expires_at``,
and the worker renews it (``heartbeat``). A claimer that finds a running job whose lease
expired re-queues it (attempts are counted; after ``max_attempts`` it fails, saying why).
Every state change is a conditional write of the record, so two claimers can never both
win a job. Leases compare wall clocks: the workers' clocks must agree to a second or so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable

from training.jobs.config import JobConfig
from training.jobs.errors import JobArtifactNotFound, JobConflict, JobFileNotFound, JobNotCancellable, JobNotFound
from training.jobs.leases import Leasing
from training.jobs.records import TERMINAL, FileRecord, JobRecord, Lease, new_id

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"job-[0-9a-f]{24}")
FILE_ID = re.compile(r"file-[0-9a-f]{24}")
ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class JobQueue(Leasing):
    """Producer side here; the worker side (claim, heartbeat, finish) is ``Leasing``."""

    def __init__(self, objects, prefix: str = "jobs/", clock: Callable[[], float] = time.time) -> None:
        self.objects, self.prefix, self.clock = objects, prefix, clock
        self._next_seq: dict[str, int] = {}

    @classmethod
    def for_store(cls, store) -> JobQueue:
        """The queue beside a BiasStore: in its folder, or under its S3 prefix."""
        if hasattr(store, "objects"):  # S3Store
            return cls(store.objects)
        from bias_store.backends.folder.objects import FolderObjects

        return cls(FolderObjects(store.root))

    # -- keys --------------------------------------------------------------------------
    def _record_key(self, job_id: str) -> str:
        if not JOB_ID.fullmatch(job_id or ""):
            raise JobNotFound(job_id)
        return f"{self.prefix}records/{job_id}.json"

    def _file_key(self, file_id: str, ext: str) -> str:
        if not FILE_ID.fullmatch(file_id or ""):
            raise JobFileNotFound(file_id)
        return f"{self.prefix}files/{file_id}.{ext}"

    # -- files -------------------------------------------------------------------------
    def put_file(self, data: bytes, filename: str, rows: int, columns: list[str]) -> FileRecord:
        record = FileRecord(new_id("file"), filename, len(data), hashlib.sha256(data).hexdigest(), self.clock(),
                            rows, list(columns))
        self.objects.create(self._file_key(record.id, "data"), data)
        self.objects.create(self._file_key(record.id, "json"), record.to_json())  # the record last: whole or absent
        return record

    def file(self, file_id: str) -> FileRecord:
        found = self.objects.get(self._file_key(file_id, "json"))
        if found is None:
            raise JobFileNotFound(file_id)
        return FileRecord.from_json(found[0])

    def file_bytes(self, file_id: str) -> bytes:
        self.file(file_id)
        found = self.objects.get(self._file_key(file_id, "data"))
        if found is None:
            raise JobFileNotFound(file_id)
        return found[0]

    # -- records -----------------------------------------------------------------------
    def _read(self, job_id: str) -> tuple[JobRecord, str]:
        found = self.objects.get(self._record_key(job_id))
        if found is None:
            raise JobNotFound(job_id)
        return JobRecord.from_json(found[0]), found[1]

    def get(self, job_id: str) -> JobRecord:
        return self._read(job_id)[0]

    def _update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
        """Apply ``change`` to the record by compare-and-swap, retrying on a concurrent write.
        ``change`` edits a copy and returns it, or returns None to leave the record as it is."""
        while True:
            record, etag = self._read(job_id)
            new = change(copy.deepcopy(record))
            if new is None:
                return record
            if self.objects.replace(self._record_key(job_id), new.to_json(), etag):
                return new

    # -- producer side -----------------------------------------------------------------
    def submit(self, config: JobConfig, files: dict[str, str], idempotency_key: str | None = None) -> JobRecord:
        """Queue a job (its files were checked and stored before); the same key and config
        give back the first job, another config under that key is JobConflict."""
        for file_id in files.values():
            self.file(file_id)  # JobFileNotFound before anything is written
        key = f"{self.prefix}keys/{hashlib.sha256(idempotency_key.encode()).hexdigest()}" if idempotency_key else None
        if key and (existing := self._keyed(key, idempotency_key, config, files)):
            return existing
        now = self.clock()
        record = JobRecord(id=new_id("job", now), task=config.task, status="validating_files", created_at=now,
                           config=config.to_dict(), files=dict(files), max_attempts=config.max_attempts,
                           idempotency_key=idempotency_key)
        self.objects.create(self._record_key(record.id), record.to_json())
        if key and not self.objects.create(key, json.dumps({"key": idempotency_key, "job": record.id}).encode()):
            self.objects.delete(self._record_key(record.id))  # another submit with this key won the race
            return self._keyed(key, idempotency_key, config, files) or self.get(json.loads(self.objects.get(key)[0])["job"])
        return self._enqueue(record.id)

    def _keyed(self, key: str, idempotency_key: str, config: JobConfig, files: dict[str, str]) -> JobRecord | None:
        found = self.objects.get(key)
        if found is None:
            return None
        job_id = json.loads(found[0])["job"]
        for _ in range(50):  # the winner of a race writes its record first; wait for it briefly
            try:
                record = self.get(job_id)
                break
            except JobNotFound:
                time.sleep(0.05)
        else:
            raise JobNotFound(job_id)
        if record.config != config.to_dict() or record.files != dict(files):
            raise JobConflict(idempotency_key, job_id)
        # A submit that crashed between its key and its queueing is finished by the retry.
        return self._enqueue(job_id) if record.status == "validating_files" else record

    def _enqueue(self, job_id: str) -> JobRecord:
        self.objects.create(f"{self.prefix}active/{job_id}", b"")  # before "queued": a claimer then finds it

        changed = []

        def queue(r: JobRecord) -> JobRecord | None:
            changed.clear()  # a retried compare-and-swap: only the write that lands counts
            if r.status != "validating_files":
                return None  # a racing submit with the same key queued it
            r.status = "queued"
            changed.append(True)
            return r

        record = self._update(job_id, queue)
        if changed:
            self._event(job_id, "status", "queued", {"status": "queued"})
        return record

    def list(self, status: str | None = None, task: str | None = None, limit: int = 20,
             after: str | None = None) -> tuple[list[JobRecord], str | None]:
        """Newest first; ``after`` is the last id of the previous page. Returns (page, next cursor)."""
        ids = sorted((k.rsplit("/", 1)[-1][:-len(".json")] for k in self.objects.list(f"{self.prefix}records/")
                      if k.endswith(".json")), reverse=True)
        page: list[JobRecord] = []
        for job_id in ids:
            if after is not None and job_id >= after:
                continue
            try:
                record = self.get(job_id)
            except JobNotFound:
                continue
            if (status is None or record.status == status) and (task is None or record.task == task):
                if len(page) == limit:
                    return page, page[-1].id
                page.append(record)
        return page, None

    def cancel(self, job_id: str) -> JobRecord:
        """queued -> cancelled now; running -> cancel_requested (the worker stops); ended -> JobNotCancellable."""
        def cancel(r: JobRecord) -> JobRecord | None:
            if r.status in TERMINAL:
                raise JobNotCancellable(job_id, r.status)
            if r.status == "running":
                if r.cancel_requested:
                    return None
                r.cancel_requested = True
            else:
                r.status, r.finished_at = "cancelled", self.clock()
            return r

        record = self._update(job_id, cancel)
        if record.status == "cancelled":
            self.objects.delete(f"{self.prefix}active/{job_id}")
            self._event(job_id, "status", "cancelled", {"status": "cancelled"})
        else:
            self._event(job_id, "message", "cancel requested; the worker stops at its next step")
        return record

    # -- events and artifacts ----------------------------------------------------------
    def _event(self, job_id: str, type: str, message: str, data: dict | None = None, level: str = "info") -> None:
        folder = f"{self.prefix}{job_id}/events/"
        seq = self._next_seq.get(job_id)
        if seq is None:
            last = [k for k in self.objects.list(folder) if k.endswith(".json")]
            seq = int(last[-1].rsplit("/", 1)[-1][:-5]) + 1 if last else 1
        while True:
            event = {"seq": seq, "created_at": self.clock(), "level": level, "type": type, "message": message,
                     "data": data or {}}
            if self.objects.create(f"{folder}{seq:09d}.json", json.dumps(event).encode()):
                self._next_seq[job_id] = seq + 1
                return
            seq += 1  # another writer (the server, another worker) took this number

    def event(self, lease: Lease, type: str, message: str, data: dict | None = None, level: str = "info") -> None:
        self._event(lease.job_id, type, message, data, level)

    def events(self, job_id: str, after: int = 0) -> list[dict]:
        self._record_key(job_id)
        folder = f"{self.prefix}{job_id}/events/"
        keys = self.objects.list(folder, start_after=f"{folder}{after:09d}.json" if after else None)
        found = (self.objects.get(k) for k in keys if k.endswith(".json"))
        return [json.loads(f[0]) for f in found if f is not None]

    def put_artifact(self, lease: Lease, name: str, data: bytes) -> None:
        if not ARTIFACT_NAME.fullmatch(name):
            raise ValueError(f"artifact name {name!r}: use letters, digits, '_', '.' and '-'")
        key = f"{self.prefix}{lease.job_id}/artifacts/{name}"
        while True:
            found = self.objects.get(key)
            if self.objects.replace(key, data, found[1] if found else None):
                return

    def artifacts(self, job_id: str) -> list[str]:
        self.get(job_id)
        folder = f"{self.prefix}{job_id}/artifacts/"
        return [k[len(folder):] for k in self.objects.list(folder)]

    def artifact(self, job_id: str, name: str) -> bytes:
        self._record_key(job_id)
        found = self.objects.get(f"{self.prefix}{job_id}/artifacts/{name}") if ARTIFACT_NAME.fullmatch(name) else None
        if found is None:
            raise JobArtifactNotFound(job_id, name, self.artifacts(job_id))
        return found[0]
