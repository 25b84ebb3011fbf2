"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bitfit_client import _calls
from bitfit_client._base import DEFAULT_URL, Answer, Deadline, _Base
from bitfit_client._calls import Call, Inputs, Item
from bitfit_client.jobs import Files, Jobs
from bitfit_client.models import PredictResult, Ready, TaskInfo, TaskSummary
from bitfit_client.retry import Retry


class Client(_Base):
    """``Client("http://host:8000")``; the API key defaults to ``$BITFIT_API_KEY``. ``timeout`` is
    each call's deadline in seconds, its retries and their waits included."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 30.0,
        retry: Retry | None = None, http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, retry, timeout)
        self.http = http or httpx.Client(base_url=self.base_url, timeout=timeout)
        self.jobs = Jobs(self)  # training jobs: create, get, list, cancel, wait
        self.files = Files(self)  # training files: upload once, use in many jobs

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call) -> Any:
        deadline, request_id = self._start(call)
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._try(call, deadline, request_id)
            except httpx.TransportError as exc:
                if deadline.left <= 0:
                    raise deadline.expired(call, request_id) from exc
                retry = self._should_retry(call, attempt, None, exc)
                wait = self._wait(call, attempt, deadline, None, type(exc).__name__) if retry else None
                if wait is None:
                    raise self._transport_error(call, exc, request_id) from exc
                time.sleep(wait)
                continue
            result, error = self._answer(call, answer, request_id)
            if error is None:
                return result
            if not self._should_retry(call, attempt, error, None):
                raise error
            wait = self._wait(call, attempt, deadline, answer.headers.get("retry-after"), str(error))
            if wait is None:
                raise error
            time.sleep(wait)

    def _try(self, call: Call, deadline: Deadline, request_id: str) -> Answer:
        headers = self._headers(request_id, call)
        with self.http.stream(call.method, call.path, headers=headers, timeout=deadline.timeout(), **self._kwargs(call)) as r:
            chunks = []
            for chunk in r.iter_bytes():  # a server trickling its answer meets the deadline here
                chunks.append(chunk)
                if deadline.left <= 0:
                    raise httpx.ReadTimeout("the call's deadline passed while its answer was arriving")
            return Answer(r.status_code, r.headers, b"".join(chunks))

    # -- predict -------------------------------------------------------------------------
    def predict(
        self, task: str, inputs: Inputs, *, top_k: int | None = None, return_all_scores: bool = True, version: int | None = None,
        function_to_apply: str | None = None, truncation: bool | None = None, min_generation: int | None = None,
        timeout: float | None = None,
    ) -> PredictResult:
        """One text, a list of texts, or a list of (text, text_pair) tuples.

        ``function_to_apply`` ("softmax", "sigmoid", "none") rescores; ``truncation=False``
        refuses an input past the backbone's length; ``min_generation`` waits for an upload's
        ``generation`` (read-your-writes through any replica); ``timeout`` replaces the
        client's for this call."""
        options = _calls.Options(top_k, return_all_scores, function_to_apply, truncation)
        return self._send(_calls.predict(task, inputs, options, version, min_generation, timeout))

    def predict_many(
        self, items: list[Item], *, min_generation: int | None = None, timeout: float | None = None
    ) -> list[PredictResult]:
        """Items for any mix of tasks in one request, answered in order."""
        return self._send(_calls.predict_many(items, min_generation, timeout))

    # -- tasks ---------------------------------------------------------------------------
    def upload(
        self, source: str | Path | bytes, name: str | None = None, *, timeout: float | None = None, allow_label_change: bool = False,
    ) -> TaskInfo:
        """A new task, or the next version of an existing one (its labels must stay unless ``allow_label_change``)."""
        return self._send(_calls.upload(source, name, timeout, allow_label_change))

    def replace(
        self, task: str, source: str | Path | bytes, *, timeout: float | None = None, allow_label_change: bool = False,
    ) -> TaskInfo:
        """``task``'s next version; other labels than the current version's raise LabelChange unless ``allow_label_change``."""
        return self._send(_calls.replace(task, source, timeout, allow_label_change))

    def list_tasks(self, prefix: str = "", page_size: int = 100) -> Iterator[TaskSummary]:
        """Every task (whose name starts with ``prefix``) in name order, a page of ``page_size`` at a time."""
        cursor = None
        while True:
            page = self._send(_calls.list_page(page_size, cursor, prefix))
            yield from page.tasks
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

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
