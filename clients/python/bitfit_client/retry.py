"""When a failed call is tried again, and after how long.

A call is retried only when trying again cannot do something twice:

- *safe* calls (reads, health, predict: they change nothing) on 429, 503 and any
  transport error;
- *unsafe* calls (upload, replace, rollback, delete) only when the server provably did
  nothing: the connection was never made, a 429, or a 503 whose JSON code says the server
  refused the request before handling it (``overloaded``). A timeout, a broken connection
  after sending, or a ``not_ready`` 503 is *not* retried: the upload may have landed
  (``not_ready`` is also what requests still running at the graceful-shutdown timeout get).

Every call has one deadline, the client's ``timeout``: tries and waits together never run
past it (a server trickling its answer cannot hold a call for longer).

The wait honours ``Retry-After`` (seconds), otherwise it backs off exponentially with jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

REFUSED_BEFORE_HANDLING = ("overloaded",)
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class Retry:
    attempts: int = 4  # tries in all, the first included; 1 = never retry
    backoff_s: float = 0.25  # first wait without Retry-After; doubles per try
    max_wait_s: float = 30.0  # no single wait is longer, Retry-After included

    def wait(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_wait_s)
            except ValueError:
                pass  # an HTTP date: rare for these answers; back off instead
        base = self.backoff_s * 2 ** (attempt - 1)
        return min(base * (0.5 + random.random() / 2), self.max_wait_s)


def retry_status(status: int, code: str | None, safe: bool) -> bool:
    if status == 429:
        return True
    if status == 503:
        return safe or code in REFUSED_BEFORE_HANDLING
    return False


def retry_transport(exc: httpx.TransportError, safe: bool) -> bool:
    return safe or isinstance(exc, _NEVER_SENT)
