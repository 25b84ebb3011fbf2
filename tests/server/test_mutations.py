"""Uploads through the server: validated once by the caller, then stored and served."""

from __future__ import annotations

import bias_store.backends.base
import bias_store.format
from tests.helpers import random_bias_set
from tests.server_support import serving, upload


def test_an_upload_parses_the_file_header_once(tmp_path, tiny_backbone, monkeypatch):
    calls = []
    real = bias_store.format.read_header

    def counting(data):
        calls.append(len(data))
        return real(data)

    # Every reader of the header in the upload path: the format's loads and the store.
    monkeypatch.setattr(bias_store.format, "read_header", counting)
    monkeypatch.setattr(bias_store.backends.base, "read_header", counting)
    with serving(tmp_path / "s", tiny_backbone) as client:
        calls.clear()  # the start-up load of an empty store reads nothing anyway
        r = upload(client, random_bias_set(tiny_backbone.spec, "once", seed=1))
        assert r.status_code == 201, r.text
        assert len(calls) == 1
        calls.clear()
        r = upload(client, random_bias_set(tiny_backbone.spec, "other", seed=2), name="renamed")
        assert r.status_code == 201 and r.json()["name"] == "renamed"
        assert len(calls) == 1
        assert client.post("/predict/renamed", json={"inputs": "x"}).status_code == 200
