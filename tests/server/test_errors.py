"""server/http/errors.py: one table maps each error to (status, code, description); a failure logs once."""

from __future__ import annotations

import logging

import pytest
from fastapi.exceptions import RequestValidationError

from bias_store.errors import BiasSetTooLarge, FingerprintMismatch, InvalidBiasSet, TaskNotFound, VersionNotFound
from engine.errors import EmptyInput, UnknownTask
from server.exceptions import ClientGone, LabelChange, LimitExceeded, NotReady, Unauthorized
from server.http.errors import HTTP_ERRORS, INTERNAL, error_response, status_of
from server.http.routes.responses import errors
from tests.helpers import random_bias_set
from tests.server_support import PREDICTS, serving, upload

CASES = [
    (UnknownTask("x", ["a"]), 404, "task_not_found", {"known_tasks": ["a"]}),
    (TaskNotFound("x", ["b"]), 404, "task_not_found", {"known_tasks": ["b"]}),
    (VersionNotFound("x", 3, [1, 2]), 404, "version_not_found", {"available_versions": [1, 2]}),
    (FingerprintMismatch("a" * 64, "b" * 64), 409, "fingerprint_mismatch", {"reason": "fingerprint_mismatch"}),
    (BiasSetTooLarge(10, 5), 413, "limit_exceeded", {"reason": "too_large"}),
    (InvalidBiasSet("bad_shape", "wrong"), 422, "invalid_bias_set", {"reason": "bad_shape"}),
    (EmptyInput("empty", 0), 422, "invalid_input", {}),  # a subclass finds its base's entry
    (LimitExceeded("too many"), 413, "limit_exceeded", {}),
    (NotReady("starting", {"Retry-After": "1"}), 503, "not_ready", {}),
    (Unauthorized("no key"), 401, "unauthorized", {}),
    (LabelChange("t", ["a", "b"], ["b", "a"]), 409, "label_change", {"old_labels": ["a", "b"], "new_labels": ["b", "a"]}),
    (KeyError("a bug"), 500, "internal_error", {}),
]


@pytest.mark.parametrize("exc, status, code, extra", CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_each_error_answers_with_its_table_entry(exc, status, code, extra, caplog):
    response = error_response(exc)
    body = response.body.decode()
    assert response.status_code == status == status_of(exc)
    assert f'"code":"{code}"' in body
    for key in extra:
        assert f'"{key}"' in body
    if status == 500:
        assert "a bug" not in body  # never the internals in a response
    assert not caplog.records  # mapping an error never logs


def test_limits_name_their_setting_and_edge_errors_keep_their_headers():
    assert b"BITFIT_MAX_UPLOAD_BYTES" in error_response(BiasSetTooLarge(10, 5)).body
    assert error_response(Unauthorized("no key")).headers["www-authenticate"] == "Bearer"
    assert error_response(NotReady("x", {"Retry-After": "3"})).headers["retry-after"] == "3"


def test_a_cancelled_request_counts_as_client_gone():
    import asyncio

    assert status_of(asyncio.CancelledError()) == HTTP_ERRORS[ClientGone].status == 499


def test_openapi_answers_come_from_the_table():
    answers = errors(UnknownTask, VersionNotFound, InvalidBiasSet, RequestValidationError)
    assert set(answers) == {404, 422}
    assert HTTP_ERRORS[VersionNotFound].description in answers[404]["description"]
    assert HTTP_ERRORS[RequestValidationError].description in answers[422]["description"]
    assert INTERNAL.status not in answers


def test_one_failed_forward_is_one_error_line(tmp_path, tiny_backbone, caplog):
    with serving(tmp_path / "s", tiny_backbone, raise_server_exceptions=False) as client:
        assert upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1)).status_code == 201
        engine = client.app.state.services.engine

        def broken_forward(prepared):  # what a device error in the forward looks like
            raise RuntimeError("device lost")

        engine.complete = broken_forward  # the batcher's forward step (engine.prepare, then this)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            r = client.post("/predict/t", json={"inputs": "x"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "device lost" not in r.text
        errors_logged = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
        assert len(errors_logged) == 1, [rec.getMessage() for rec in errors_logged]
        assert "device lost" in errors_logged[0].getMessage() and errors_logged[0].exc_info
        assert PREDICTS + 'status="500",task="t"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize("method, path", [("POST", "/tasks/"), ("GET", "/tasks/"), ("POST", "/predict/"), ("GET", "/healthz/")])
def test_a_trailing_slash_never_redirects_to_the_host_header(client, method, path):
    """Issue 22: ``POST /tasks/`` with ``Host: evil.example`` was a 307 to http://evil.example/tasks, before auth."""
    r = client.request(method, path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code in (404, 405) and "location" not in r.headers
    assert r.json()["error"]["code"] in ("not_found", "method_not_allowed")
