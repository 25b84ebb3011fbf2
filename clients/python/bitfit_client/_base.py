"""What the sync and async clients share: settings, the request, reading the answer."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pydantic

from bitfit_client._calls import Call
from bitfit_client.errors import BitfitError, MalformedAnswer, Timeout, TransportError, error_from
from bitfit_client.retry import Retry, retry_status, retry_transport

log = logging.getLogger("bitfit_client")

API_KEY_ENV = "BITFIT_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass
class Answer:
    """An HTTP answer, read whole (within the call's deadline)."""

    status: int
    headers: httpx.Headers
    content: bytes


@dataclass
class Deadline:
    """One call's time budget: every try and every wait of its retries together."""

    seconds: float
    end: float = field(init=False)

    def __post_init__(self) -> None:
        self.end = time.monotonic() + self.seconds

    @property
    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def timeout(self) -> httpx.Timeout:
        """What one try may take: each connect/read/write at most what is left."""
        return httpx.Timeout(max(self.left, 0.001))

    def expired(self, call: Call, request_id: str) -> Timeout:
        error = Timeout(f"{call.method} {call.path}: no answer within the call's {self.seconds:g} s timeout")
        error.request_id = request_id
        return error


class _Base:
    def __init__(self, base_url: str, api_key: str | None, retry: Retry | None, timeout: float) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, like {DEFAULT_URL!r}; got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        # Explicit key first, then the one environment variable every bitfit tool reads.
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.retry = retry or Retry()
        self.timeout = timeout

    def _start(self, call: Call) -> tuple[Deadline, str]:
        """The call's deadline and its X-Request-ID (one for all its tries: the server logs it)."""
        return Deadline(call.timeout if call.timeout is not None else self.timeout), uuid.uuid4().hex

    def _headers(self, request_id: str, call: Call | None = None) -> dict[str, str]:
        headers = {"X-Request-ID": request_id, **((call.headers or {}) if call is not None else {})}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    @staticmethod
    def _kwargs(call: Call) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"params": call.params or None}
        if call.files is not None:
            kwargs.update(files=call.files, data=call.data)
        elif call.json is not None:
            kwargs["json"] = call.json
        return kwargs

    def _answer(self, call: Call, answer: Answer, request_id: str) -> tuple[Any, BitfitError | None]:
        """(parsed result, None) for a success, (None, typed error) otherwise."""
        request_id = answer.headers.get("x-request-id", request_id)
        if answer.status < 300 and call.raw:
            return call.parse(answer.content), None
        if answer.status < 300:
            try:
                return call.parse(json.loads(answer.content) if answer.content else {}), None
            except (ValueError, KeyError, TypeError, pydantic.ValidationError) as exc:
                error = MalformedAnswer(f"{call.method} {call.path}: the {answer.status} answer is not the API's: "
                                        f"{type(exc).__name__}: {str(exc)[:300]}", answer.status)
                error.request_id = request_id
                raise error from None
        try:
            payload = json.loads(answer.content)
        except ValueError:
            payload = None
        error = error_from(answer.status, payload, answer.content.decode("utf-8", "replace"))
        error.request_id = request_id
        return None, error

    def _should_retry(self, call: Call, attempt: int, error: BitfitError | None, exc: Exception | None) -> bool:
        if attempt >= self.retry.attempts:
            return False
        if exc is not None:
            return isinstance(exc, httpx.TransportError) and retry_transport(exc, call.safe)
        assert error is not None
        return retry_status(error.status or 0, error.server_code, call.safe)

    def _wait(self, call: Call, attempt: int, deadline: Deadline, retry_after: str | None, why: str) -> float | None:
        """How long to wait before the next try; None when that would pass the call's deadline."""
        wait = self.retry.wait(attempt, retry_after)
        if wait >= deadline.left:
            return None
        self._log_retry(call, attempt, wait, why)
        return wait

    def _log_retry(self, call: Call, attempt: int, wait: float, why: str) -> None:
        log.warning("%s %s: %s; try %d of %d in %.2fs", call.method, call.path, why, attempt + 1, self.retry.attempts, wait)

    @staticmethod
    def _transport_error(call: Call, exc: Exception, request_id: str) -> TransportError:
        kind = Timeout if isinstance(exc, httpx.TimeoutException) else TransportError
        error = kind(f"{call.method} {call.path}: {type(exc).__name__}: {exc}")
        error.request_id = request_id
        return error
