"""The uvicorn HTTP protocol of `bitfit serve`, with a deadline for a request's headers.

uvicorn times out idle keep-alive connections, but a client that opens a connection and
sends its headers a byte every few seconds holds it forever (the app never sees the
request, so no middleware can cut it off). Here every request's headers must be complete
within ``header_timeout`` of the connection (or of the previous answer), or the
connection is closed. The body has its own deadline in server/http/middleware.py.
"""

from __future__ import annotations

import asyncio

try:  # uvicorn[standard] brings httptools; plain uvicorn uses h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - depends on the install
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base


def protocol_class(header_timeout: float) -> type:
    """The uvicorn ``http=`` protocol class with this header deadline."""

    class HeaderDeadlineProtocol(_Base):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_timer: asyncio.TimerHandle | None = None
            self._arm()

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._cycle_when_armed = self.cycle
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is self._cycle_when_armed and not self.transport.is_closing():
                self.transport.close()  # no request started since arming: nothing to answer

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._cycle_when_armed:
                self._header_timer.cancel()  # a request's headers are complete
                self._header_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this keep-alive connection

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return HeaderDeadlineProtocol
