"""Noticing a store that stopped answering (a frozen endpoint), not only one that fails.

A poll of a frozen S3 endpoint neither fails nor returns until its timeouts run out
(attempts x read timeout), and it holds the sync's lock meanwhile. ``PollClock`` times the
watcher's store read, so ``/readyz`` reports the store after ``stall_after_s`` instead of
saying ``ok`` throughout; ``WriterLock`` is that lock for writers: while the watcher holding
it is stalled on the store, a mutation answers 503 at once instead of queueing behind it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from bias_store.errors import StoreUnavailable


class PollClock:
    def __init__(self, stall_after_s: float = 3.0) -> None:
        self.stall_after_s = stall_after_s
        self._since: float | None = None  # monotonic start of the store read under way

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def waited(self) -> float:
        """Seconds the store read under way has waited (0 when none is)."""
        since = self._since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def stalled(self) -> bool:
        return self.waited() > self.stall_after_s

    def describe(self) -> str:
        return f"the store has not answered a change-log poll for {self.waited():.1f} s"


class WriterLock:
    """A re-entrant lock that a writer stops waiting for while ``clock`` says the store stalled."""

    def __init__(self, clock: PollClock) -> None:
        self.clock = clock
        self._lock = threading.RLock()

    def __enter__(self) -> WriterLock:
        while not self._lock.acquire(timeout=0.05):
            if self.clock.stalled:  # the holder waits on the store; so would this writer
                raise StoreUnavailable(self.clock.describe())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
