"""The asynchronous client: the same calls as ``Client``, awaited."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from bitfit_client import _calls
from bitfit_client._base import DEFAULT_URL, _Base
from bitfit_client._calls import Call, Inputs, Item
from bitfit_client.models import PredictResult, Ready, TaskInfo
from bitfit_client.retry import Retry


class AsyncClient(_Base):
    """``AsyncClient("http://host:8000")``; the API key defaults to ``$BITFIT_API_KEY``."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 30.0,
        retry: Retry | None = None, http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, retry)
        self.http = http or httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.http.request(call.method, call.path, headers=self._headers(), **self._kwargs(call))
            except httpx.TransportError as exc:
                if not self._should_retry(call, attempt, None, exc):
                    raise self._transport_error(call, exc) from exc
                wait = self.retry.wait(attempt, None)
                self._log_retry(call, attempt, wait, type(exc).__name__)
                await asyncio.sleep(wait)
                continue
            result, error = self._answer(call, response)
            if error is None:
                return result
            if not self._should_retry(call, attempt, error, None):
                raise error
            wait = self.retry.wait(attempt, response.headers.get("retry-after"))
            self._log_retry(call, attempt, wait, str(error))
            await asyncio.sleep(wait)

    # -- predict -------------------------------------------------------------------------
    async def predict(
        self, task: str, inputs: Inputs, *, top_k: int | None = None, return_all_scores: bool = True, version: int | None = None
    ) -> PredictResult:
        """One text, a list of texts, or a list of (text, text_pair) tuples."""
        return await self._send(_calls.predict(task, inputs, top_k, return_all_scores, version))

    async def predict_many(self, items: list[Item]) -> list[PredictResult]:
        """Items for any mix of tasks in one request, answered in order."""
        return await self._send(_calls.predict_many(items))

    # -- tasks ---------------------------------------------------------------------------
    async def upload(self, source: str | Path | bytes, name: str | None = None) -> TaskInfo:
        return await self._send(_calls.upload(source, name))

    async def replace(self, task: str, source: str | Path | bytes) -> TaskInfo:
        return await self._send(_calls.replace(task, source))

    async def list_tasks(self) -> list[TaskInfo]:
        return await self._send(_calls.list_tasks())

    async def get_task(self, task: str) -> TaskInfo:
        return await self._send(_calls.get_task(task))

    async def delete_task(self, task: str) -> None:
        return await self._send(_calls.delete_task(task))

    async def rollback(self, task: str, version: int | None = None) -> TaskInfo:
        return await self._send(_calls.rollback(task, version))

    # -- health --------------------------------------------------------------------------
    async def health(self) -> bool:
        return await self._send(_calls.health())

    async def ready(self) -> Ready:
        return await self._send(_calls.ready())

    async def check_admin(self) -> None:
        """Raise Unauthorized/Forbidden unless this key may upload (nothing changes on the server)."""
        return await self._send(_calls.can_admin())
