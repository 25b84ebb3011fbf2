"""The access log's fields, and one line for a refused upload."""

from __future__ import annotations

import io
import json
import logging

import pytest

from server.process import logs
from tests.server_support import serving


@pytest.fixture
def json_log():
    logs.configure("INFO", "json")
    (handler,) = [h for h in logging.getLogger().handlers if h.name == "bitfit"]
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logging.getLogger().removeHandler(handler)


def test_access_log_lines_have_method_path_status_and_duration_fields(tmp_path, tiny_backbone, json_log):
    with serving(tmp_path / "store", tiny_backbone, access_log=True) as client:
        client.get("/healthz", headers={"X-Request-ID": "probe-1"})
        client.post("/predict/nope", json={"inputs": "x"})
    access = [line for line in json_log() if line["logger"] == "bitfit.access"]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [("GET", "/healthz", 200), ("POST", "/predict/nope", 404)]
    assert access[0]["request_id"] == "probe-1" and access[0]["duration_ms"] >= 0 and "client" in access[0]
    assert access[0]["message"].startswith("GET /healthz 200 ")


def test_no_access_log_unless_asked_and_a_refused_upload_logs_one_line(tmp_path, tiny_backbone, json_log):
    with serving(tmp_path / "store", tiny_backbone) as client:
        client.get("/healthz")
        refused = client.post("/tasks", files={"file": ("x.safetensors", b"not a bias set")})
    assert refused.status_code == 422
    lines = [line for line in json_log() if line["logger"].startswith(("bitfit", "server"))]
    assert not [line for line in lines if line["logger"] == "bitfit.access"]
    (line,) = [line for line in lines if "refused" in line["message"]]
    assert line["level"] == "WARNING" and "POST /tasks refused: 422 invalid_bias_set" in line["message"]
    assert line["request_id"] == refused.headers["x-request-id"]
