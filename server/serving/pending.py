"""A request's rows on their way through the batcher (``Pending``), a batch taken and prepared
for its forward (``Prepared``), and how finished requests are handed back to their event
loops and traced. The batcher (server/serving/batcher.py) owns the queue that holds them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from engine import Prediction, TaskHandle
from engine.inputs import EncodedRow
from server.serving import spans

Item = tuple[TaskHandle, EncodedRow]


@dataclass(eq=False)
class Pending:
    """One request's rows on their way through the queue."""

    items: list[Item]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float  # time.perf_counter() when queued
    results: list[Prediction | None] = field(default_factory=list)
    taken: int = 0  # rows already handed to a batch (a prefix of items)
    finished: int = 0  # rows with a result
    dropped: bool = False  # client gone, or an earlier batch failed: skip the rest
    started: bool = False  # its first row entered a batch (queue wait observed)
    # time.time_ns() when queued, and (start, end, rows) of each batch its rows were in: its spans.
    enqueued_ns: int = field(default_factory=time.time_ns)
    batches: list[tuple[int, int, int]] = field(default_factory=list)

    def settle(self, error: BaseException | None = None) -> None:
        """Complete the future (on its event loop's thread)."""
        if self.future.done():  # cancelled: the client went away
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(self.results)


@dataclass(eq=False)
class Prepared:
    """A batch taken from the queue and prepared by the engine, waiting for its forward."""

    taken: list[tuple[Pending, int]]  # (request, row index) per batch row
    requests: list[Pending]  # distinct, in order
    items: list[Item]
    split: list[list[int]]
    prepared: object  # the engine's
    start: float  # time.perf_counter() when taken
    start_ns: int


def record_spans(pending: Pending) -> None:
    """The request's queue wait and forwards as spans of its own trace (server/serving/spans.py)."""
    if not pending.batches or spans.tracer() is None:
        return
    tasks = ",".join(dict.fromkeys(handle.name for handle, _ in pending.items))
    spans.record("queue_wait", pending.enqueued_ns, pending.batches[0][0], **{spans.TASK: tasks})
    for start_ns, end_ns, rows in pending.batches:
        spans.record("forward", start_ns, end_ns, **{spans.TASK: tasks, "bitfit.batch_rows": rows})


def settle_all(done: list[Pending], error: BaseException | None = None) -> None:
    """Hand finished requests back to their event loops: one wake-up per loop, not per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Pending]] = {}
    for pending in done:
        by_loop.setdefault(pending.loop, []).append(pending)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(lambda g=group: [p.settle(error) for p in g])
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            pass
