"""Tokenization: short requests on the event loop, long ones on the pool, never on the inference worker."""

from __future__ import annotations

import asyncio
import threading

from server.process.settings import Settings
from server.serving.tokenize import Tokenizers
from tests.server.test_batcher import FakeEngine, handle, make, rows


def test_tokenization_overlaps_a_running_forward_and_long_inputs_leave_the_loop():
    engine = FakeEngine()
    engine.gate.clear()  # the worker is stuck in a forward
    batcher = make(engine, max_batch_rows=2, max_wait_ms=0)
    tokenizers = Tokenizers(engine, Settings(tokenize_inline_chars=10))

    async def main():
        stuck = asyncio.ensure_future(batcher.submit(rows("a", 1, 1)))
        await asyncio.sleep(0.02)
        long_rows = await asyncio.wait_for(tokenizers.encode(handle("b", 2), ["x" * 50]), timeout=5)
        long_thread = engine.encoded_on
        await tokenizers.encode(handle("b", 2), ["short"])
        short_thread = engine.encoded_on
        engine.gate.set()
        await stuck
        return long_rows, long_thread, short_thread

    long_rows, long_thread, short_thread = asyncio.run(main())
    batcher.close()
    tokenizers.close()
    assert len(long_rows) == 1 and long_thread.startswith("bitfit-tokenize")
    assert short_thread == threading.main_thread().name
