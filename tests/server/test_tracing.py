"""OpenTelemetry: one trace per request, continuing the caller's traceparent, with the predict path's spans."""

from __future__ import annotations

import pytest

trace = pytest.importorskip("opentelemetry.trace")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from tests.helpers import random_bias_set  # noqa: E402
from tests.server_support import TEXTS, serving, upload  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def exporter():
    """The SDK's in-memory exporter on the process's tracer provider (OpenTelemetry allows one per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


def test_a_predict_request_is_one_trace_continuing_the_callers(tmp_path, tiny_backbone, exporter):
    with serving(tmp_path / "store", tiny_backbone) as client:
        upload(client, random_bias_set(tiny_backbone.spec, "mood", seed=1))
        exporter.clear()
        answer = client.post("/predict/mood", json={"inputs": TEXTS[:2]},
                             headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01", "X-Request-ID": "traced-1"})
        assert answer.status_code == 200
        client.post("/predict/mood", json={"inputs": TEXTS[0]})  # no traceparent: a trace of its own
    spans = exporter.get_finished_spans()
    ours = [s for s in spans if format(s.context.trace_id, "032x") == TRACE_ID]
    names = sorted(s.name for s in ours)
    assert names == ["POST /predict/{task}", "forward", "queue_wait", "tokenize"], names
    (server,) = [s for s in ours if s.kind == trace.SpanKind.SERVER]
    assert format(server.parent.span_id, "016x") == PARENT and server.parent.is_remote
    for child in ours:
        if child is not server:
            assert child.parent.span_id == server.context.span_id and child.attributes["bitfit.task"] == "mood"
    others = {s.context.trace_id for s in spans} - {int(TRACE_ID, 16)}
    assert len(others) == 1  # the second request: one new trace, all its spans in it
