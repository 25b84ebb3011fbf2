"""OpenTelemetry spans of the predict path, when the ``otel`` extra is installed.

They are children of the request's server span, which FastAPI makes (continuing a W3C
``traceparent``: server/http/app.py). Spans go to OpenTelemetry's global tracer provider: ``bitfit serve --otlp-endpoint`` sets
one that exports over OTLP/HTTP (server/process/tracing.py); without it, or without the
package, every call here is a no-op. The batch worker serves many requests at once, so
its timings are recorded per request and become that request's spans afterwards, on the
request's own context: ``queue_wait`` and one ``forward`` per batch its rows were in.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed
    trace = None

TASK = "bitfit.task"
_NO_SPAN = nullcontext()  # reusable: it holds no state


_cached: tuple[Any, Any] = (None, None)  # (provider, its "bitfit" tracer)
# ``trace.get_tracer_provider()`` looks up OTEL_PYTHON_TRACER_PROVIDER in os.environ on every
# call while no provider is set (a KeyError raised and caught: ~3 us, three times a request).
# Where that variable is unset and the module keeps its provider where it always has, the
# provider is read directly; otherwise through the public call.
_DIRECT = trace is not None and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ and hasattr(trace, "_TRACER_PROVIDER")


def _provider() -> Any:
    """The global tracer provider, or None where none is set (the proxy's spans record nothing)."""
    if trace is None:
        return None
    provider = trace._TRACER_PROVIDER if _DIRECT else trace.get_tracer_provider()
    return None if provider is None or isinstance(provider, trace.ProxyTracerProvider) else provider


def tracer() -> Any:
    """The tracer of the global provider, or None where none is set: making a span of the
    default proxy provider cost the event loop ~10% of a request, for nothing
    (docs/benchmarks/request_path.md)."""
    global _cached
    provider = _provider()
    if provider is None:
        return None
    if _cached[0] is not provider:
        _cached = (provider, provider.get_tracer("bitfit"))
    return _cached[1]


def tracer_configured() -> bool:
    """Whether a tracer provider is set (without one, FastAPI makes no server span and every
    call here is a no-op)."""
    return _provider() is not None


def span(name: str, **attributes: Any) -> AbstractContextManager:
    """A child span of the current one (the request's), around a block."""
    t = tracer()
    if t is None:
        return _NO_SPAN
    return t.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None})


def record(name: str, start_ns: int, end_ns: int, **attributes: Any) -> None:
    """A finished span with the times the worker measured, under the current span."""
    t = tracer()
    if t is None:
        return
    t.start_span(name, start_time=start_ns, attributes=attributes).end(end_time=end_ns)
