"""Dynamic micro-batching across tasks, with inference worker threads.

Requests of any mix of tasks are queued as rows ``(TaskHandle, EncodedRow)``. The worker
takes rows first-in first-out until the batch holds ``max_rows`` rows or ``max_tokens``
padded tokens, waiting at most ``max_wait`` after the oldest row arrived, and runs them as
ONE forward pass (the engine only groups rows by task at the heads). A request larger
than a batch is split over consecutive batches. Between a forward and its answers the
worker takes and prepares the next batch (``_work``).

The event loop never runs torch: forwards run on the worker threads. There is one worker
by default; where the engine runs forwards in parallel (ONNX Runtime,
``Engine.parallel_forwards``) there may be ``workers`` (BITFIT_INFERENCE_WORKERS), each
taking its own batch from the one queue, idle ones an even share of a burst (``_take``).
Rows arrive tokenized (server/serving/tokenize.py), so a worker only pads and runs the forward.

Back-pressure: when ``max_queue_rows`` rows are waiting, ``submit`` raises Overloaded
(HTTP 503 + Retry-After) instead of letting the queue grow without bound. Rows of a
request whose client went away are dropped before they reach a forward pass.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from engine import Engine, Prediction
from engine.packing import computed_tokens
from server.exceptions import ClientGone, NotReady, Overloaded
from server.process.metrics import Metrics
from server.process.settings import Settings, env_name
from server.serving.pending import Item, Pending, Prepared, record_spans, settle_all


class Batcher:
    def __init__(self, engine: Engine, metrics: Metrics, settings: Settings, workers: int = 1) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_rows = settings.max_batch_rows
        self.max_tokens = settings.max_batch_tokens
        self.max_wait = settings.max_wait_ms / 1000
        self.max_queue_rows = settings.max_queue_rows
        self.retry_after_s = settings.retry_after_s
        self._queue: deque[Pending] = deque()
        self._queued_rows = 0
        self._queued_tokens = 0
        self._cond = threading.Condition()
        self._idle = 0  # workers waiting for rows in _next_batch
        self._shared = False  # the last take left rows as another worker's share: they are due
        self._closing = False
        self._workers = [threading.Thread(target=self._work, name=f"bitfit-inference-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for worker in self._workers:
            worker.start()

    # -- request side (event loop) ---------------------------------------------------------
    async def submit(self, items: list[Item], disconnected: Callable[[], Awaitable] | None = None) -> list[Prediction]:
        """Queue rows and wait for their predictions, in order.

        ``disconnected()`` makes an awaitable that completes when the client goes away; the
        request's rows not yet in a batch are then dropped and ClientGone is raised.
        """
        loop = asyncio.get_running_loop()
        pending = Pending(items, loop.create_future(), loop, time.perf_counter(), [None] * len(items))
        tokens = sum(len(row) for _, row in items)
        with self._cond:
            if self._closing:
                raise NotReady("the server is shutting down", {"Retry-After": str(self.retry_after_s)})
            if self._queued_rows + len(items) > self.max_queue_rows:
                self.metrics.rejected.labels("queue_full").inc()
                raise Overloaded(
                    f"the batch queue is full ({self._queued_rows} rows waiting, {env_name('max_queue_rows')}="
                    f"{self.max_queue_rows}); retry later",
                    {"Retry-After": str(self.retry_after_s)},
                )
            was_empty = not self._queue
            self._queue.append(pending)
            self._queued_rows += len(items)
            self._queued_tokens += tokens
            self.metrics.queue_depth.set(self._queued_rows)
            # Wake the worker only when that changes what it does: the first row arrived, or
            # a batch is full. Otherwise it is busy, or waits for a deadline this row does
            # not move, and every needless wake-up costs the event loop the GIL.
            if was_empty or self._queued_rows >= self.max_rows or self._queued_tokens >= self.max_tokens:
                self._cond.notify()
        try:
            predictions = await self._wait(pending, disconnected)
            record_spans(pending)
            return predictions
        except (asyncio.CancelledError, ClientGone):
            pending.dropped = True  # the worker skips whatever it has not started yet
            raise

    async def _wait(self, pending: Pending, disconnected: Callable[[], Awaitable] | None) -> list[Prediction]:
        """The request's predictions, or ClientGone when ``disconnected()`` completes first (a
        done callback cancels the wait: cheaper than ``asyncio.wait``'s extra future per request)."""
        if disconnected is None:
            return await pending.future
        watcher = asyncio.ensure_future(disconnected())
        gone = False

        def on_gone(_: asyncio.Future) -> None:
            nonlocal gone
            if not watcher.cancelled() and not pending.future.done():
                gone = True
                pending.future.cancel()

        watcher.add_done_callback(on_gone)
        try:
            return await pending.future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not gone or (task is not None and getattr(task, "cancelling", lambda: 0)()):
                raise  # the request itself was cancelled (too)
            self.metrics.rejected.labels("client_gone").inc()
            raise ClientGone("the client disconnected before the prediction was ready") from None
        finally:
            watcher.remove_done_callback(on_gone)
            if not watcher.done():
                watcher.cancel()

    # -- worker side -----------------------------------------------------------------------
    def _work(self) -> None:
        """Take a batch, prepare it, run it; between a forward and its answers, take and prepare
        the next batch. The worker's GIL-bound steps (padding, gathering rows, answers) then
        run while the event loop is idle, and its burst of answers and new requests overlaps
        the next forward, which holds no GIL: at each release and retake of the GIL the worker
        would otherwise wait for a busy event loop (docs/benchmarks/request_path.md)."""
        ready: Prepared | None = None
        while True:
            if ready is None:
                batch = self._next_batch()
                if batch is None:
                    return
                ready = self._prepare(batch) if batch else None
                continue
            done = self._complete(ready)
            batch = self._next_batch(wait=False)  # rows already due; [] if none
            ready = self._prepare(batch) if batch else None
            settle_all(done)

    def _next_batch(self, wait: bool = True) -> list[tuple[Pending, int]] | None:
        """Wait for rows and take one batch's worth; None once closed and drained.
        ``wait=False``: only rows already due (a full batch, or the oldest row's wait over), else []."""
        with self._cond:
            if not wait:
                return self._take(sharers=1 + self._idle) if self._queue and self._due() else []
            self._idle += 1
            try:
                while True:  # another worker may take the rows this one waits for
                    while not self._queue:
                        if self._closing:
                            return None
                        self._cond.wait()
                    if self._due():
                        return self._take(sharers=self._idle)
                    self._cond.wait(self._queue[0].enqueued + self.max_wait - time.perf_counter())
            finally:
                self._idle -= 1

    def _due(self) -> bool:  # caller holds self._cond; the queue is not empty
        full = self._queued_rows >= self.max_rows or self._queued_tokens >= self.max_tokens
        return self._closing or full or self._shared or time.perf_counter() >= self._queue[0].enqueued + self.max_wait

    def _take(self, sharers: int = 1) -> list[tuple[Pending, int]]:  # caller holds self._cond
        """One batch from the head of the queue. ``sharers``: the workers free to run the rows
        now (this one and the idle ones); each takes an even share, so that a burst of
        requests runs as forwards side by side rather than as one while the others idle."""
        taken: list[tuple[Pending, int]] = []
        longest = 0
        limit = min(self.max_rows, -(-self._queued_rows // max(1, sharers)))
        while self._queue and len(taken) < limit:
            pending = self._queue[0]
            if pending.dropped:
                self._pop_rest(pending)
                continue
            row = pending.items[pending.taken][1]
            grown = max(longest, len(row))
            if taken and grown * (len(taken) + 1) > self.max_tokens:
                break  # padding is to the longest row, so this is the batch's real cost
            taken.append((pending, pending.taken))
            longest = grown
            pending.taken += 1
            self._queued_rows -= 1
            self._queued_tokens -= len(row)
            if pending.taken == len(pending.items):
                self._queue.popleft()
        self.metrics.queue_depth.set(self._queued_rows)
        self._shared = bool(self._queue) and sharers > 1
        if self._queue and len(self._workers) > 1:
            self._cond.notify()  # rows are left: an idle worker takes them (submit wakes none now)
        return taken

    def _pop_rest(self, pending: Pending) -> None:  # caller holds self._cond
        rest = pending.items[pending.taken :]
        self._queued_rows -= len(rest)
        self._queued_tokens -= sum(len(row) for _, row in rest)
        pending.taken = len(pending.items)
        self._queue.popleft()

    def _prepare(self, taken: list[tuple[Pending, int]]) -> Prepared | None:
        """Pad the batch and gather its rows' biases (the engine's ``prepare``); None if that failed."""
        start, start_ns = time.perf_counter(), time.time_ns()
        requests = list(dict.fromkeys(p for p, _ in taken))  # distinct, in order
        for pending in requests:
            if not pending.started:
                pending.started = True
                self.metrics.queue_wait.observe(start - pending.enqueued)
        items = [p.items[i] for p, i in taken]
        split = self.engine.split(items)  # computed once: run by the engine, reported in the metrics
        try:
            prepared = self.engine.prepare(items, split)
        except Exception as exc:  # a bug or a device error: fail these requests, keep serving
            self._fail(requests, exc)
            return None
        return Prepared(taken, requests, items, split, prepared, start, start_ns)

    def _complete(self, ready: Prepared) -> list[Pending]:
        """Run a prepared batch; its requests now answered in full (settled by the caller)."""
        try:
            predictions = self.engine.complete(ready.prepared)
        except Exception as exc:  # a bug or a device error: fail these requests, keep serving
            self._fail(ready.requests, exc)
            return []
        items = ready.items
        self.metrics.inference.observe(time.perf_counter() - ready.start)
        self.metrics.batch_rows.observe(len(items))
        self.metrics.rows.inc(len(items))
        self.metrics.batch_tasks.observe(len({h.slot for h, _ in items}))
        self._observe_padding(items, ready.split)
        end_ns = time.time_ns()
        for pending in ready.requests:
            pending.batches.append((ready.start_ns, end_ns, len(items)))
        done = []
        for (pending, i), prediction in zip(ready.taken, predictions):
            pending.results[i] = prediction
            pending.finished += 1
            if pending.finished == len(pending.items):
                done.append(pending)
        return done

    @staticmethod
    def _fail(requests: list[Pending], exc: Exception) -> None:
        # Not logged here: each request's answer logs it once, at the HTTP edge.
        for pending in requests:
            pending.dropped = True
        settle_all(requests, exc)

    def _observe_padding(self, items: list[Item], split: list[list[int]]) -> None:
        lengths = [len(row) for _, row in items]
        self.metrics.tokens.inc(sum(lengths))
        computed = sum(computed_tokens([lengths[i] for i in group], self.engine.packs) for group in split)
        self.metrics.batch_forwards.observe(len(split))
        self.metrics.batch_padding.observe(1 - sum(lengths) / computed)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def workers(self) -> int:
        return len(self._workers)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish every queued row, then stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
