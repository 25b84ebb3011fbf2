"""GET /jobs/{id}/events: a job's events as a list, or live as Server-Sent Events.

The stream (``Accept: text/event-stream`` or ``?stream=true``) sends every event after
``after`` (or the ``Last-Event-ID`` a reconnecting EventSource sends) as ``id: <seq>``,
``event: <type>``, ``data: <event JSON>``, then follows the job by polling its events in the
store, and ends after the job's terminal status; a ``succeeded`` is sent once this server
serves the published version (``served``: its store watcher has applied the publish), so the
next predict finds it. An idle stream sends a comment line every
``BITFIT_EVENT_KEEPALIVE_S`` (proxies close silent connections). A client that goes away
ends its stream at once (Starlette cancels it on the disconnect) and frees its slot; at most
``BITFIT_MAX_EVENT_STREAMS`` are open at a time (the next is a 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from bias_store.errors import StoreUnavailable
from server.exceptions import Forbidden, Overloaded, Unauthorized
from server.http.auth import require_admin
from server.http.job_schemas import EventList
from server.http.routes.body import CheckedRoute
from server.http.routes.jobs import get_jobs, served, visible_job
from server.http.routes.responses import errors
from server.process.settings import env_name
from training.jobs.errors import JobNotFound
from training.jobs.queue import JobQueue
from training.jobs.records import TERMINAL

log = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=CheckedRoute, dependencies=[Depends(require_admin)])

POLL_S = 0.5  # how often an open stream reads the job's new events
STATUS_EVERY = 4  # polls between reads of the job's record (a status the events may not carry yet)
TERMINAL_GRACE_S = 2.0  # a finished job's last status event may land just after its record


class EventStreams:
    """Open streams, counted on the event loop (no lock needed): a bound, and a figure for tests."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0

    def acquire(self) -> None:
        if self.open >= self.limit:
            raise Overloaded(f"{self.open} event streams are open ({env_name('max_event_streams')}); poll "
                             "GET /jobs/{id}/events?after=N instead, or retry", {"Retry-After": "5"})
        self.open += 1

    def release(self) -> None:
        self.open -= 1


def _frame(event: dict) -> bytes:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event['seq']}\nevent: {event.get('type', 'message')}\ndata: {data}\n\n".encode()


def _ends(event: dict) -> bool:
    """A status event announcing a terminal status (its data, or failing that its message, says which)."""
    if event.get("type") != "status":
        return False
    status = (event.get("data") or {}).get("status", event.get("message"))
    return status in TERMINAL


async def _follow(request: Request, queue: JobQueue, job_id: str, after: int, keepalive_s: float) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"  # an EventSource reconnects after 2 s, with Last-Event-ID
    sent_at, polls, finished_at = time.monotonic(), 0, None
    while True:
        try:
            events = await run_in_threadpool(queue.events, job_id, after)
        except (StoreUnavailable, OSError, ValueError) as exc:  # a store hiccup: the next poll tries again
            log.warning("events of %s: %s: %s; retrying", job_id, type(exc).__name__, exc)
            events = []
        for event in events:
            after = max(after, int(event["seq"]))
            if _ends(event):
                with contextlib.suppress(StoreUnavailable, OSError, ValueError):  # else the event goes out without the wait
                    await served(request, await run_in_threadpool(queue.get, job_id))
                yield _frame(event)
                return
            yield _frame(event)
            sent_at = time.monotonic()
        polls += 1
        if finished_at is None and polls % STATUS_EVERY == 0 and await _ended(queue, job_id):
            finished_at = time.monotonic()
        if finished_at is not None and time.monotonic() - finished_at > TERMINAL_GRACE_S:
            return  # finished, and no terminal status event came: end anyway
        if time.monotonic() - sent_at >= keepalive_s:
            yield b": keep-alive\n\n"
            sent_at = time.monotonic()
        await asyncio.sleep(POLL_S)


async def _ended(queue: JobQueue, job_id: str) -> bool:
    try:
        return (await run_in_threadpool(queue.get, job_id)).status in TERMINAL
    except (StoreUnavailable, OSError, ValueError) as exc:
        log.warning("job %s: %s: %s; retrying", job_id, type(exc).__name__, exc)
        return False


class EventStream(StreamingResponse):
    """Holds one of the open-stream slots from the route until the answer ends, however it ends
    (finished, the client gone, the server stopping)."""

    def __init__(self, follow: AsyncIterator[bytes], streams: EventStreams) -> None:
        super().__init__(follow, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.streams.release()
            with contextlib.suppress(RuntimeError):  # stops its polling now, not at garbage collection
                await self.body_iterator.aclose()


def _start(after: int, last_event_id: str | None) -> int:
    if last_event_id is None:
        return after
    if not last_event_id.strip().isdigit():
        raise RequestValidationError([{"type": "value_error", "loc": ("header", "Last-Event-ID"), "msg": "must be an event's seq"}])
    return max(after, int(last_event_id))


@router.get(
    "/{job_id}/events", response_model=EventList, responses=errors(Unauthorized, Forbidden, JobNotFound, Overloaded),
    summary="A job's events: a list, or a live Server-Sent Events stream",
)
async def job_events(
    job_id: str,
    request: Request,
    after: int = Query(0, ge=0, description="Only events after this seq."),
    stream: bool = Query(False, description="Stream as Server-Sent Events (same as `Accept: text/event-stream`)."),
    last_event_id: str | None = Header(None, max_length=20, description="A reconnecting EventSource's last seq."),
    queue: JobQueue = Depends(get_jobs),
):  # noqa: ANN201 (a dict, or the stream)
    """The stream ends after the job's terminal status (succeeded, failed, cancelled)."""
    await visible_job(request, job_id, queue)
    if not (stream or "text/event-stream" in request.headers.get("accept", "")):
        return {"object": "list", "data": await run_in_threadpool(queue.events, job_id, after)}
    start = _start(after, last_event_id)
    streams: EventStreams = request.app.state.event_streams
    streams.acquire()
    return EventStream(_follow(request, queue, job_id, start, request.app.state.settings.event_keepalive_s), streams)
