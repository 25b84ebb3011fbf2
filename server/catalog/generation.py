"""The store generation this server has applied, and the requests waiting for a newer one.

Read-your-writes: a request may ask to be answered only once this server has applied a
given change-log generation (``X-Bitfit-Min-Generation``). Waiting holds no thread: each
waiter is an asyncio future, resolved from the watcher thread when the generation is
reached, and at most ``max_waiters`` wait at once (the next is refused at once, 503).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from server.exceptions import Overloaded


class Generation:
    def __init__(self, max_waiters: int = 1000) -> None:
        self.value = 0
        self.max_waiters = max_waiters
        self._waiters: dict[asyncio.Future, tuple[int, asyncio.AbstractEventLoop]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.on_wait: Callable[[], None] = lambda: None  # a waiter arrived (the watcher polls now)

    def advance(self, generation: int) -> None:
        """Record an applied generation and resolve every waiter it satisfies (any thread)."""
        with self._lock:
            self.value = max(self.value, generation)
            done = [(f, loop) for f, (wanted, loop) in self._waiters.items() if wanted <= self.value]
            for future, _ in done:
                del self._waiters[future]
        for future, loop in done:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # its loop is closed: nobody waits any more
                pass

    async def wait(self, generation: int, timeout: float) -> bool:
        """True once ``generation`` is applied; False after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        with self._lock:
            if generation <= self.value:
                return True
            if len(self._waiters) >= self.max_waiters:
                raise Overloaded(
                    f"{len(self._waiters)} requests already wait for a store generation (BITFIT_MAX_GENERATION_WAITERS)",
                    {"Retry-After": "1"},
                )
            self._waiters[future] = (generation, loop)
        self.on_wait()
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.pop(future, None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def sleep(self, seconds: float) -> None:
        """The watcher's pause between polls, cut short by ``wake``."""
        self._wake.wait(seconds)
        self._wake.clear()

    def wake(self) -> None:
        self._wake.set()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
