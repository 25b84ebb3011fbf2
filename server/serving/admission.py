"""Admission by work, not by rows: a budget of tokens in flight, checked before tokenizing.

A request's cost is known before it is tokenized: a row has at most ``chars + 3`` tokens
(every token covers at least one character; [CLS], [SEP] and a pair's second [SEP]) and at
most the backbone's ``max_length``. A request is admitted when its cost fits in what the
budget has left (or when nothing else is in flight, so a request larger than the whole
budget still runs alone); otherwise it is shed at once with 503 + Retry-After, before any
tokenizing or queueing. Its tokens stay charged until its answer is ready.

The middleware also sheds from the headers alone while the budget is spent, so an
overloaded server does not even read the bodies it would refuse.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from server.exceptions import Overloaded


def row_cost(value: object, max_length: int) -> int:
    """Upper bound on the tokens of one input (a text or a (text, text_pair) tuple)."""
    chars = sum(len(t) for t in value) + 1 if isinstance(value, tuple) else len(value)  # type: ignore[arg-type]
    return min(chars + 3, max_length)


class TokenBudget:
    def __init__(self, max_tokens: int, retry_after_s: int, on_shed: Callable[[], None] = lambda: None) -> None:
        self.max_tokens, self.retry_after_s, self.on_shed = max_tokens, retry_after_s, on_shed
        self.in_flight = 0
        self._lock = threading.Lock()

    @property
    def spent(self) -> bool:
        return self.in_flight >= self.max_tokens

    def admit(self, tokens: int) -> None:
        """Charge ``tokens`` or raise Overloaded; pair every admit with a release."""
        with self._lock:
            if self.in_flight and self.in_flight + tokens > self.max_tokens:
                raise self.overloaded()
            self.in_flight += tokens

    def release(self, tokens: int) -> None:
        with self._lock:
            self.in_flight -= tokens

    def overloaded(self, close: bool = False) -> Overloaded:
        """The 503 of a shed request (and it is counted); ``close`` ends the connection after it."""
        self.on_shed()
        headers = {"Retry-After": str(self.retry_after_s), **({"Connection": "close"} if close else {})}
        return Overloaded(
            f"the server is at its work budget ({self.in_flight} of {self.max_tokens} tokens in flight, "
            "BITFIT_MAX_INFLIGHT_TOKENS); retry later",
            headers,
        )
