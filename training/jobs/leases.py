"""The worker side of the queue: claim a job under a lease, renew it, finish it.

Every step is a compare-and-swap of the job record, so it is safe between threads,
processes and machines. A lease is valid while the record is running and still names
the lease's worker and attempt; ``lease_expires_at`` says when a claimer may take it over.
"""

from __future__ import annotations

import logging

from training.jobs.errors import JobNotFound, LeaseLost
from training.jobs.records import TERMINAL, JobRecord, Lease

log = logging.getLogger(__name__)

OK, LOST, CANCEL = "ok", "lost", "cancel"


class Leasing:
    """Mixed into JobQueue (queue.py), which provides objects, prefix, clock, _update, _event."""

    def _active(self) -> list[str]:
        folder = f"{self.prefix}active/"
        return [k[len(folder):] for k in self.objects.list(folder)]

    def claim(self, worker: str, lease_s: float = 30.0) -> Lease | None:
        """The oldest queued job, now running under ``worker``'s lease; None if there is none."""
        leases = self.claim_many(worker, lease_s, limit=1)
        return leases[0] if leases else None

    def claim_many(self, worker: str, lease_s: float = 30.0, limit: int = 1,
                   match=None) -> list[Lease]:
        """Up to ``limit`` queued jobs, oldest first, whose record ``match(record)`` accepts (a joint
        run takes jobs of one backbone). Expired leases met on the way are re-queued or failed."""
        leases: list[Lease] = []
        for job_id in self._active():
            if len(leases) == limit:
                break
            try:
                record = self.get(job_id)
            except JobNotFound:
                continue  # a submit between writing its marker and its record
            if record.status in TERMINAL:
                self.objects.delete(f"{self.prefix}active/{job_id}")  # the finisher died before removing it
                continue
            if record.status == "running" and record.lease_expires_at is not None \
                    and record.lease_expires_at < self.clock():
                record = self._expire(job_id)
            if record.status == "queued" and (match is None or match(record)):
                lease = self._take(job_id, worker, lease_s)
                if lease is not None:
                    leases.append(lease)
        return leases

    def _expire(self, job_id: str) -> JobRecord:
        """A running job whose worker stopped renewing: back to the queue, or failed after max_attempts."""
        def expire(r: JobRecord) -> JobRecord | None:
            if r.status != "running" or r.lease_expires_at is None or r.lease_expires_at >= self.clock():
                return None  # renewed or taken meanwhile
            lost = r.worker
            r.worker, r.lease_expires_at, r.progress = None, None, {}
            if r.cancel_requested:
                r.status, r.finished_at = "cancelled", self.clock()
            elif r.attempts >= r.max_attempts:
                r.status, r.finished_at = "failed", self.clock()
                r.error = (f"the job's worker stopped renewing its lease {r.attempts} times (last: worker {lost}); "
                           f"it was tried max_attempts={r.max_attempts} times. Check the workers' logs (memory, "
                           "crashes), then submit it again")
            else:
                r.status = "queued"
            return r

        before = self.get(job_id)
        record = self._update(job_id, expire)
        if record.status != before.status:
            log.warning("job %s: the lease of worker %s expired; now %s", job_id, before.worker, record.status)
            level = "error" if record.status == "failed" else "warning"
            message = record.error or f"the lease of worker {before.worker} expired (attempt {before.attempts} of " \
                                      f"{before.max_attempts}); the job is {record.status}"
            self._event(job_id, "status", message, {"status": record.status, "attempt": before.attempts}, level)
            if record.status in TERMINAL:
                self.objects.delete(f"{self.prefix}active/{job_id}")
        return record

    def _take(self, job_id: str, worker: str, lease_s: float) -> Lease | None:
        def take(r: JobRecord) -> JobRecord | None:
            if r.status != "queued":
                return None
            now = self.clock()
            r.status, r.worker, r.attempts = "running", worker, r.attempts + 1
            r.started_at = r.started_at or now
            r.lease_expires_at = now + lease_s
            return r

        record = self._update(job_id, take)
        if record.status != "running" or record.worker != worker:
            return None  # another claimer won
        self._event(job_id, "status", f"running on worker {worker} (attempt {record.attempts} of {record.max_attempts})",
                    {"status": "running", "worker": worker, "attempt": record.attempts})
        return Lease(job_id, worker, record.attempts, lease_s)

    def _held(self, r: JobRecord, lease: Lease) -> bool:
        return r.status == "running" and r.worker == lease.worker and r.attempts == lease.attempt

    def renew(self, lease: Lease, progress: dict | None = None, **fields) -> str:
        """Extend the lease (and store progress / other record fields): "ok", "lost" or "cancel"."""
        def renew(r: JobRecord) -> JobRecord | None:
            if not self._held(r, lease):
                return None
            r.lease_expires_at = self.clock() + lease.lease_s
            if progress is not None:
                r.progress = dict(progress)
            for name, value in fields.items():
                setattr(r, name, value)
            return r

        record = self._update(lease.job_id, renew)
        if not self._held(record, lease):
            return LOST
        return CANCEL if record.cancel_requested else OK

    def heartbeat(self, lease: Lease, progress: dict | None = None) -> bool:
        """Renew the lease; False when it is lost or a cancel was requested (the worker stops)."""
        return self.renew(lease, progress) == OK

    def lease_state(self, lease: Lease) -> str:
        """One read, no write: "ok", "lost" or "cancel" (a worker polls it between heartbeats).
        A lease past its expiry that no claimer has taken yet is still held: the next renew keeps it."""
        record = self.get(lease.job_id)
        if not self._held(record, lease):
            return LOST
        return CANCEL if record.cancel_requested else OK

    def mark_publishing(self, lease: Lease) -> JobRecord:
        """Record that this attempt starts publishing (LeaseLost if it no longer holds the job):
        a later attempt then looks for this job's version in the store before publishing."""
        def mark(r: JobRecord) -> JobRecord | None:
            if not self._held(r, lease):
                raise LeaseLost(f"job {lease.job_id}: worker {lease.worker} lost its lease before publishing")
            r.publishing = {"attempt": lease.attempt, "worker": lease.worker, "at": self.clock()}
            r.lease_expires_at = self.clock() + lease.lease_s
            return r

        return self._update(lease.job_id, mark)

    def end_cancelled(self, lease: Lease) -> JobRecord | None:
        """The heartbeat's answer to a cancel: the job ends ``cancelled`` now, whatever the training
        thread is doing, unless its publish has begun (then the cancel came too late). None if not ended."""
        ended = []

        def end(r: JobRecord) -> JobRecord | None:
            ended.clear()  # a retried compare-and-swap: only the write that lands counts
            if not self._held(r, lease) or not r.cancel_requested or r.publishing is not None:
                return None
            r.status, r.finished_at, r.lease_expires_at = "cancelled", self.clock(), None
            r.result = {"published": False, "version": None, "decision": {"reason": "cancelled; nothing was published"}}
            ended.append(True)
            return r

        record = self._update(lease.job_id, end)
        if not ended:
            return None
        self.objects.delete(f"{self.prefix}active/{lease.job_id}")
        self._event(lease.job_id, "status", "cancelled", {"status": "cancelled"})
        return record

    def finish(self, lease: Lease, status: str, result: dict | None = None, error: str | None = None) -> JobRecord:
        """End the job (succeeded | failed | cancelled); LeaseLost if this worker no longer holds it."""
        if status not in TERMINAL:
            raise ValueError(f"a job finishes as one of {TERMINAL}, not {status!r}")

        def end(r: JobRecord) -> JobRecord | None:
            if not self._held(r, lease):
                raise LeaseLost(f"job {lease.job_id}: worker {lease.worker} no longer holds it (now {r.status}, "
                                f"worker {r.worker})")
            r.status, r.finished_at, r.lease_expires_at = status, self.clock(), None
            r.result, r.error = result, error
            return r

        record = self._update(lease.job_id, end)
        self.objects.delete(f"{self.prefix}active/{lease.job_id}")
        message = {"succeeded": "succeeded", "cancelled": "cancelled"}.get(status) or f"failed: {error}"
        self._event(lease.job_id, "status", message, {"status": status, **({"result": result} if result else {})},
                    "error" if status == "failed" else "info")
        return record
