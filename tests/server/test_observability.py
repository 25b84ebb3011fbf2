"""Request ids, JSON logs, the default collectors and the Grafana dashboard's metric names."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.process import logs
from tests.helpers import random_bias_set
from tests.server_support import TEXTS, replace, serving, upload

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "bitfit.json"


@pytest.fixture
def json_log():
    """The `bitfit` handler in JSON, writing to a buffer; removed afterwards."""
    logs.configure("INFO", "json")
    (handler,) = [h for h in logging.getLogger().handlers if h.name == "bitfit"]
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield buffer
    logging.getLogger().removeHandler(handler)


def test_request_id_is_echoed_made_and_in_the_log_lines(tmp_path, tiny_backbone, json_log):
    spec = tiny_backbone.spec
    with serving(tmp_path / "store", tiny_backbone) as client:
        upload(client, random_bias_set(spec, "t", seed=1))
        replace(client, "t", random_bias_set(spec, "t", seed=2))
        given = client.post("/predict/t?version=1", json={"inputs": TEXTS[0]}, headers={"X-Request-ID": "job-42.a"})
        made = client.post("/predict/t", json={"inputs": ""})  # a 422 answer has one too
        odd = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert given.headers["x-request-id"] == "job-42.a"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"]) and made.status_code == 422
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    # Logged on a pool thread while loading version 1 for that request: the id followed it there.
    (loaded,) = [line for line in lines if "beside the current" in line["message"]]
    assert loaded["request_id"] == "job-42.a" and loaded["level"] == "INFO" and loaded["logger"] == "server.catalog.pinned"
    assert {"ts", "level", "logger", "message", "request_id"} <= set(lines[0])


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}


def _exported(client) -> set[str]:
    """Every series name /metrics has or declares (a labelled counter with no child yet still
    has its # TYPE line, e.g. the rejections counter before any overload)."""
    names = set()
    for family in text_string_to_metric_families(client.get("/metrics").text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ())}
    return names


def test_default_collectors_build_info_and_every_dashboard_metric_exists(tmp_path, tiny_backbone):
    with serving(tmp_path / "store", tiny_backbone) as client:
        upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1))
        client.post("/predict/t", json={"inputs": TEXTS})
        client.post("/predict/nope", json={"inputs": "x"})
        client.post("/tasks", files={"file": ("x.safetensors", b"not a bias set")})
        exported = _exported(client)
        build = client.get("/metrics").text
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info", "bitfit_build_info"} <= exported
    assert re.search(r'bitfit_build_info\{python="[\d.]+",torch="[^"]+",version="[^"]+"\} 1\.0', build)

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(?:bitfit|process|python)_[a-z_]+\b", expr)}
    assert len(used) >= 15
    assert sorted(used - exported) == []
    wanted = {"bitfit_requests_total", "bitfit_request_latency_seconds_bucket", "bitfit_batch_rows_sum", "bitfit_batch_tasks_sum",
              "bitfit_batch_padding_ratio_sum", "bitfit_queue_depth_rows", "bitfit_queue_wait_seconds_bucket"}
    assert wanted | {"bitfit_errors_total"} <= used  # requests, latency per task, batches, padding, queue, errors
    assert 'bitfit_errors_total{code="task_not_found"} 1.0' in build and 'bitfit_errors_total{code="invalid_bias_set"} 1.0' in build


def test_the_dashboard_check_can_fail():
    assert "bitfit_no_such_metric" not in {"bitfit_requests_total"}  # guards the set arithmetic above
    with pytest.raises(ValueError):
        logs.configure("INFO", "xml")
