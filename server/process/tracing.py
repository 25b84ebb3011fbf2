"""``--otlp-endpoint``: OpenTelemetry's tracer provider for this process, exporting over OTLP/HTTP.

A process-wide choice, like the logging configuration: OpenTelemetry's API reads one
global provider (server/serving/spans.py and server/http/tracing.py use it).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def export_traces(endpoint: str, service_name: str = "bitfit-serve") -> None:
    """Batch every span to ``endpoint`` (a collector's OTLP/HTTP base URL, e.g. http://host:4318)."""
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise SystemExit(f"bitfit serve: --otlp-endpoint needs the otel extra (pip install 'bitfit-serve[otel]'): {exc}") from None
    resource = Resource.create({"service.name": service_name, "service.instance.id": f"{socket.gethostname()}:{os.getpid()}"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    trace.set_tracer_provider(provider)
    log.info("tracing: spans go to %s over OTLP/HTTP", endpoint)
