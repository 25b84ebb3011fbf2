"""A running job's side thread: renews the lease, stores progress at a bounded rate, and
notices a cancel or a lost lease for the training loop to act on at its next step."""

from __future__ import annotations

import logging
import threading
import time

from bias_store.errors import StoreUnavailable
from training.jobs.leases import CANCEL, LOST, OK
from training.jobs.records import Lease

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the record is read: a cancel is seen within this (the loop stops at its next step)
WRITE_S = 2.0  # the fastest progress is written to the record


class Heartbeat:
    def __init__(self, queue, lease: Lease, poll_s: float = POLL_S, write_s: float = WRITE_S) -> None:
        self.queue, self.lease = queue, lease
        self.poll_s, self.write_s = poll_s, write_s
        self.renew_s = max(min(lease.lease_s / 3, 10.0), poll_s)  # three chances to renew within a lease
        self.state = OK  # "ok" | "lost" | "cancel", as leases.py says it
        self._lock = threading.Lock()
        self._progress: dict | None = None  # pending: not yet written
        self._fields: dict = {}
        self._stop = threading.Event()
        self._last_write = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{lease.job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def update(self, progress: dict | None = None, **fields) -> None:
        """Progress (and record fields such as metrics) for the next write; never blocks on the store."""
        with self._lock:
            if progress is not None:
                self._progress = dict(progress)
            self._fields.update(fields)

    def flush(self) -> str:
        """Write what is pending now (e.g. an evaluation's metrics) and renew; the state after."""
        self._write()
        return self.state

    def _write(self) -> None:
        with self._lock:
            progress, fields = self._progress, self._fields
            self._progress, self._fields = None, {}
        try:
            state = self.queue.renew(self.lease, progress, **fields)
        except StoreUnavailable as exc:  # the lease may survive a short outage: try again next poll
            log.warning("job %s: cannot renew the lease now: %s", self.lease.job_id, exc)
            with self._lock:
                self._progress = self._progress or progress
                self._fields = {**fields, **self._fields}
            return
        self._last_write = time.monotonic()
        if self.state != LOST:
            self.state = state

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            since = time.monotonic() - self._last_write
            with self._lock:
                pending = self._progress is not None or bool(self._fields)
            try:
                if since >= self.renew_s or (pending and since >= self.write_s):
                    self._write()
                else:
                    state = self.queue.lease_state(self.lease)
                    if self.state != LOST:
                        self.state = state
                if self.state == CANCEL and self.queue.end_cancelled(self.lease) is not None:
                    # The job ends as cancelled now, whatever the training thread is doing; it stops
                    # at its next check, and a publish not yet begun never happens (mark_publishing
                    # needs a running job). The state stays "cancel" for the loop to stop on.
                    return
            except StoreUnavailable as exc:
                log.warning("job %s: the store is unavailable: %s", self.lease.job_id, exc)
            except Exception:  # the training must learn of a broken heartbeat, not run on blind
                log.exception("job %s: heartbeat failed", self.lease.job_id)
                self.state = LOST
            if self.state == LOST:
                return
