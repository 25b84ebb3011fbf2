"""Version-pinned predict: ?version=N serves that kept version, or 404 naming the kept ones."""

from __future__ import annotations

import pytest

from engine import Engine
from tests.helpers import random_bias_set
from tests.server_support import TEXTS, replace, serving, upload


def _expected(backbone, seed: int) -> list[dict[str, float]]:
    engine = Engine(backbone)
    engine.register(random_bias_set(backbone.spec, "t", seed=seed))
    return [p.scores for p in engine.predict("t", TEXTS[:2])]


def _scores(response) -> list[dict[str, float]]:
    assert response.status_code == 200, response.text
    return [p["scores"] for p in response.json()["predictions"]]


@pytest.fixture
def three_versions(tmp_path, tiny_backbone):
    """A server with task t at v1, v2, v3 (seeds 1, 2, 3), keeping 3 versions, 1 pinned slot."""
    with serving(tmp_path / "store", tiny_backbone, keep_versions=3, max_pinned_versions=1) as client:
        assert upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1)).status_code == 201
        for seed in (2, 3):
            assert replace(client, "t", random_bias_set(tiny_backbone.spec, "t", seed=seed)).status_code == 201
        yield client


def test_each_kept_version_is_served_as_asked(three_versions, tiny_backbone):
    client = three_versions
    for version in (1, 2, 3, 1, 2):  # capacity 1: v1 and v2 evict each other
        response = client.post(f"/predict/t?version={version}", json={"inputs": TEXTS[:2]})
        assert response.json()["version"] == version
        assert _scores(response) == [pytest.approx(s, abs=1e-5) for s in _expected(tiny_backbone, version)]
    multi = client.post("/predict", json={"items": [{"task": "t", "inputs": TEXTS[:2], "version": 1},
                                                    {"task": "t", "inputs": TEXTS[:2]}]})
    assert [r["version"] for r in multi.json()["results"]] == [1, 3]
    # Pinned slots are given back: only the current version and one cached one stay.
    engine = client.app.state.services.engine
    assert engine.slots_in_use == 2


def test_unknown_version_is_a_404_naming_the_kept_ones(three_versions):
    response = three_versions.post("/predict/t?version=7", json={"inputs": "hi"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "version_not_found"
    assert response.json()["error"]["available_versions"] == [1, 2, 3]
    assert three_versions.post("/predict/t?version=0", json={"inputs": "hi"}).status_code == 422
    assert three_versions.post("/predict/t?version=two", json={"inputs": "hi"}).status_code == 422


def test_a_cached_version_follows_pruning_and_delete(three_versions, tiny_backbone):
    client = three_versions
    assert client.post("/predict/t?version=1", json={"inputs": "hi"}).status_code == 200  # now cached
    assert replace(client, "t", random_bias_set(tiny_backbone.spec, "t", seed=4)).status_code == 201  # prunes v1
    pruned = client.post("/predict/t?version=1", json={"inputs": "hi"})
    assert pruned.status_code == 404 and pruned.json()["error"]["available_versions"] == [2, 3, 4]
    assert client.post("/predict/t?version=2", json={"inputs": "hi"}).status_code == 200
    assert client.delete("/tasks/t").status_code == 204
    assert client.post("/predict/t?version=2", json={"inputs": "hi"}).json()["error"]["code"] == "task_not_found"
