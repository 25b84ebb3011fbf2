"""The synchronous client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from bitfit_client import _calls
from bitfit_client._base import DEFAULT_URL, _Base
from bitfit_client._calls import Call, Inputs, Item
from bitfit_client.models import PredictResult, Ready, TaskInfo
from bitfit_client.retry import Retry


class Client(_Base):
    """``Client("http://host:8000")``; the API key defaults to ``$BITFIT_API_KEY``."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 30.0,
        retry: Retry | None = None, http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, retry)
        self.http = http or httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.http.request(call.method, call.path, headers=self._headers(), **self._kwargs(call))
            except httpx.TransportError as exc:
                if not self._should_retry(call, attempt, None, exc):
                    raise self._transport_error(call, exc) from exc
                wait = self.retry.wait(attempt, None)
                self._log_retry(call, attempt, wait, type(exc).__name__)
                time.sleep(wait)
                continue
            result, error = self._answer(call, response)
            if error is None:
                return result
            if not self._should_retry(call, attempt, error, None):
                raise error
            wait = self.retry.wait(attempt, response.headers.get("retry-after"))
            self._log_retry(call, attempt, wait, str(error))
            time.sleep(wait)

    # -- predict -------------------------------------------------------------------------
    def predict(
        self, task: str, inputs: Inputs, *, top_k: int | None = None, return_all_scores: bool = True, version: int | None = None
    ) -> PredictResult:
        """One text, a list of texts, or a list of (text, text_pair) tuples."""
        return self._send(_calls.predict(task, inputs, top_k, return_all_scores, version))

    def predict_many(self, items: list[Item]) -> list[PredictResult]:
        """Items for any mix of tasks in one request, answered in order."""
        return self._send(_calls.predict_many(items))

    # -- tasks ---------------------------------------------------------------------------
    def upload(self, source: str | Path | bytes, name: str | None = None) -> TaskInfo:
        return self._send(_calls.upload(source, name))

    def replace(self, task: str, source: str | Path | bytes) -> TaskInfo:
        return self._send(_calls.replace(task, source))

    def list_tasks(self) -> list[TaskInfo]:
        return self._send(_calls.list_tasks())

    def get_task(self, task: str) -> TaskInfo:
        return self._send(_calls.get_task(task))

    def delete_task(self, task: str) -> None:
        return self._send(_calls.delete_task(task))

    def rollback(self, task: str, version: int | None = None) -> TaskInfo:
        return self._send(_calls.rollback(task, version))

    # -- health --------------------------------------------------------------------------
    def health(self) -> bool:
        return self._send(_calls.health())

    def ready(self) -> Ready:
        return self._send(_calls.ready())

    def check_admin(self) -> None:
        """Raise Unauthorized/Forbidden unless this key may upload (nothing changes on the server)."""
        return self._send(_calls.can_admin())
