"""Answers are encoded by orjson, with no deprecation warning from FastAPI on the way."""

from __future__ import annotations

import json
import warnings

from tests.helpers import random_bias_set
from tests.server_support import serving, upload


def test_answers_are_json_and_fastapi_warns_about_nothing(tmp_path, tiny_backbone):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning raised while answering fails the test
        with serving(tmp_path / "store", tiny_backbone) as client:
            assert upload(client, random_bias_set(tiny_backbone.spec, "a", ["neg", "pos"])).status_code == 201
            answer = client.post("/predict/a", json={"inputs": ["fine", "dull"], "parameters": {"top_k": 2}})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = json.loads(answer.content)
    assert [sorted(p["scores"]) for p in body["predictions"]] == [["neg", "pos"], ["neg", "pos"]]
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-5 for p in body["predictions"])
