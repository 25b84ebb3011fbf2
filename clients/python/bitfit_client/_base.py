"""What the sync and async clients share: settings, the request, reading the answer."""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx

from bitfit_client._calls import Call
from bitfit_client.errors import BitfitError, TransportError, error_from
from bitfit_client.retry import Retry, retry_status, retry_transport

log = logging.getLogger("bitfit_client")

API_KEY_ENV = "BITFIT_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"


class _Base:
    def __init__(self, base_url: str, api_key: str | None, retry: Retry | None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, like {DEFAULT_URL!r}; got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        # Explicit key first, then the one environment variable every bitfit tool reads.
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.retry = retry or Retry()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @staticmethod
    def _kwargs(call: Call) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"params": call.params or None}
        if call.files is not None:
            kwargs.update(files=call.files, data=call.data)
        elif call.json is not None:
            kwargs["json"] = call.json
        return kwargs

    def _answer(self, call: Call, response: httpx.Response) -> tuple[Any, BitfitError | None]:
        """(parsed result, None) for a success, (None, typed error) otherwise."""
        if response.status_code < 300:
            return call.parse(response.json() if response.content else {}), None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return None, error_from(response.status_code, payload, response.text)

    def _should_retry(self, call: Call, attempt: int, error: BitfitError | None, exc: Exception | None) -> bool:
        if attempt >= self.retry.attempts:
            return False
        if exc is not None:
            return isinstance(exc, httpx.TransportError) and retry_transport(exc, call.safe)
        assert error is not None
        return retry_status(error.status or 0, error.server_code, call.safe)

    def _log_retry(self, call: Call, attempt: int, wait: float, why: str) -> None:
        log.warning("%s %s: %s; try %d of %d in %.2fs", call.method, call.path, why, attempt + 1, self.retry.attempts, wait)

    @staticmethod
    def _transport_error(call: Call, exc: Exception) -> TransportError:
        return TransportError(f"{call.method} {call.path}: {type(exc).__name__}: {exc}")
