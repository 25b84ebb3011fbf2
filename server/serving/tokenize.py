"""Where a request's inputs are validated and tokenized: never on the inference worker.

Short requests (at most ``tokenize_inline_chars`` characters) are tokenized directly on the
event loop, where that is cheaper than a thread hop; longer ones on a small thread pool
(the Rust tokenizer releases the GIL), so they overlap the running forward instead of
serializing behind it and never hold up other requests.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from engine import Engine, TaskHandle
from engine.inputs import EncodedRow
from server.process.settings import Settings
from server.serving import spans


def _chars(inputs: list) -> int:
    """Characters in a request's inputs (texts or text pairs); huge for anything unexpected."""
    total = 0
    for item in inputs:
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (tuple, list)) and all(isinstance(t, str) for t in item):
            total += sum(len(t) for t in item)
        else:
            return 1 << 62  # not ours to judge here: the engine's check on the pool reports it
    return total


class Tokenizers:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.inline_chars = settings.tokenize_inline_chars
        self._pool = ThreadPoolExecutor(settings.tokenizer_threads, thread_name_prefix="bitfit-tokenize")

    async def encode(self, handle: TaskHandle, inputs: list) -> list[EncodedRow]:
        """Validate and tokenize (raises the engine's InvalidInput)."""
        with spans.span("tokenize", **{spans.TASK: handle.name, "bitfit.inputs": len(inputs)}):
            if _chars(inputs) <= self.inline_chars:
                return self.engine.encode(handle, inputs)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self.engine.encode, handle, inputs)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
