"""OpenTelemetry spans of the predict path, when the ``otel`` extra is installed.

They are children of the request's server span, which FastAPI makes (continuing a W3C
``traceparent``: server/http/app.py). Spans go to OpenTelemetry's global tracer provider: ``bitfit serve --otlp-endpoint`` sets
one that exports over OTLP/HTTP (server/process/tracing.py); without it, or without the
package, every call here is a no-op. The batch worker serves many requests at once, so
its timings are recorded per request and become that request's spans afterwards, on the
request's own context: ``queue_wait`` and one ``forward`` per batch its rows were in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed
    trace = None

TASK = "bitfit.task"


def tracer() -> Any:
    return trace.get_tracer("bitfit") if trace is not None else None


def tracer_configured() -> bool:
    """Whether a tracer provider is set (without one, FastAPI makes no server span and every
    call here is a no-op)."""
    return trace is not None and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A child span of the current one (the request's), around a block."""
    t = tracer()
    if t is None:
        yield
        return
    with t.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None}):
        yield


def record(name: str, start_ns: int, end_ns: int, **attributes: Any) -> None:
    """A finished span with the times the worker measured, under the current span."""
    t = tracer()
    if t is None:
        return
    t.start_span(name, start_time=start_ns, attributes=attributes).end(end_time=end_ns)
