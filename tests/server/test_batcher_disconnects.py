"""The batcher and clients that leave: a disconnect drops a request's waiting rows, a cancel stays a cancel."""

from __future__ import annotations

import asyncio

import pytest

from server.exceptions import ClientGone
from tests.server.test_batcher import FakeEngine, make, rows


def behind_a_stuck_forward(body) -> tuple[object, set[str]]:
    """Run ``await body(batcher)`` while the worker is stuck in a first forward, then free it
    and check that it still answers. Returns the batcher (closed) and the tasks it ran."""
    engine = FakeEngine()
    engine.gate.clear()
    batcher = make(engine, max_batch_rows=2, max_wait_ms=0)

    async def main():
        blocker = asyncio.ensure_future(batcher.submit(rows("a", 1, 2)))
        await asyncio.sleep(0.05)  # the worker is stuck in the first forward
        await body(batcher)
        engine.gate.set()
        await blocker
        return await batcher.submit(rows("after", 9, 1))

    assert asyncio.run(main()) == [("after", 0)]
    batcher.close()
    return batcher, {name for batch in engine.batches for name, _ in batch}


def test_rows_of_a_gone_client_are_never_run():
    async def body(batcher):
        gone = asyncio.get_running_loop().create_future()
        doomed = asyncio.ensure_future(batcher.submit(rows("gone", 2, 4), disconnected=lambda: gone))
        await asyncio.sleep(0.01)
        gone.set_result(None)  # the client disconnects while its rows wait
        with pytest.raises(ClientGone):
            await doomed

    _, ran = behind_a_stuck_forward(body)
    assert "gone" not in ran


def test_a_cancelled_request_is_cancelled_not_gone_and_a_failed_watcher_counts_as_gone():
    """The disconnect watcher wakes a waiting request; a request cancelled from outside (a
    shutdown, say) stays cancelled, and a watcher that fails is a disconnect, as before."""

    async def broken():
        raise OSError("the connection's receive failed")

    async def body(batcher):
        never = asyncio.get_running_loop().create_future()
        cancelled = asyncio.ensure_future(batcher.submit(rows("cancelled", 2, 2), disconnected=lambda: never))
        failed = asyncio.ensure_future(batcher.submit(rows("failed", 3, 2), disconnected=broken))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        with pytest.raises(ClientGone):
            await failed

    batcher, ran = behind_a_stuck_forward(body)
    assert batcher.metrics.rejected.labels("client_gone")._value.get() == 1
    assert not ran & {"cancelled", "failed"}


@pytest.mark.skipif(not hasattr(asyncio.Task, "cancelling"), reason="Task.cancelling() is Python 3.11+")
def test_a_cancel_that_meets_a_disconnect_stays_a_cancel():
    """The client leaves and, before the request wakes, the request is cancelled from
    outside: the cancel wins (a ClientGone would swallow it)."""

    async def body(batcher):
        gone = asyncio.get_running_loop().create_future()
        both = asyncio.ensure_future(batcher.submit(rows("both", 2, 2), disconnected=lambda: gone))
        await asyncio.sleep(0.01)
        gone.set_result(None)
        await asyncio.sleep(0)  # the disconnect callback runs: the request's wait is woken, not yet resumed
        both.cancel()
        with pytest.raises(asyncio.CancelledError):
            await both

    _, ran = behind_a_stuck_forward(body)
    assert "both" not in ran
