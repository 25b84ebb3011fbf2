"""The batcher and clients that leave: a disconnect drops a request's waiting rows, a cancel stays a cancel."""

from __future__ import annotations

import asyncio

import pytest

from server.exceptions import ClientGone
from tests.server.test_batcher import FakeEngine, make, rows


def test_rows_of_a_gone_client_are_never_run():
    engine = FakeEngine()
    engine.gate.clear()
    batcher = make(engine, max_batch_rows=2, max_wait_ms=0)

    async def main():
        blocker = asyncio.ensure_future(batcher.submit(rows("a", 1, 2)))
        await asyncio.sleep(0.05)  # the worker is stuck in the first forward
        gone = asyncio.get_running_loop().create_future()
        doomed = asyncio.ensure_future(batcher.submit(rows("gone", 2, 4), disconnected=lambda: gone))
        await asyncio.sleep(0.01)
        gone.set_result(None)  # the client disconnects while its rows wait
        with pytest.raises(ClientGone):
            await doomed
        engine.gate.set()
        await blocker
        return await batcher.submit(rows("after", 3, 1))

    assert asyncio.run(main()) == [("after", 0)]
    batcher.close()
    assert all(name != "gone" for batch in engine.batches for name, _ in batch)


def test_a_cancelled_request_is_cancelled_not_gone_and_a_failed_watcher_counts_as_gone():
    """The disconnect watcher wakes a waiting request; a request cancelled from outside (a
    shutdown, say) stays cancelled, and a watcher that fails is a disconnect, as before."""
    engine = FakeEngine()
    engine.gate.clear()
    batcher = make(engine, max_batch_rows=2, max_wait_ms=0)

    async def main():
        loop = asyncio.get_running_loop()
        blocker = asyncio.ensure_future(batcher.submit(rows("a", 1, 2)))
        await asyncio.sleep(0.05)  # the worker is stuck in the first forward
        never = loop.create_future()
        cancelled = asyncio.ensure_future(batcher.submit(rows("cancelled", 2, 2), disconnected=lambda: never))

        async def broken():
            raise OSError("the connection's receive failed")

        failed = asyncio.ensure_future(batcher.submit(rows("failed", 3, 2), disconnected=broken))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        with pytest.raises(ClientGone):
            await failed
        engine.gate.set()
        await blocker
        return await batcher.submit(rows("after", 4, 1))

    assert asyncio.run(main()) == [("after", 0)]
    batcher.close()
    assert batcher.metrics.rejected.labels("client_gone")._value.get() == 1
    assert all(name not in ("cancelled", "failed") for batch in engine.batches for name, _ in batch)
