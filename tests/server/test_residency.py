"""Bounded residency (BITFIT_MAX_RESIDENT_TASKS): a fixed number of bias-table slots, the
least recently used task no request holds evicted to make room, an evicted task loaded
again on its next use. Real uvicorn servers on real store folders, tiny random BERT.
"""

from __future__ import annotations

import httpx

from bias_store import FilesystemStore
from bias_store.format import dumps
from tests.helpers import random_bias_set
from tests.server_support import TEXTS, put_stored, running


def _scores(client: httpx.Client, task: str) -> list[dict]:
    response = client.post(f"/predict/{task}", json={"inputs": TEXTS, "return_all_scores": True})
    assert response.status_code == 200, response.text
    return [p["scores"] for p in response.json()["predictions"]]


def _ready(client: httpx.Client) -> dict:
    return client.get("/readyz").json()


def test_touching_more_tasks_than_slots_keeps_residency_at_the_budget(tmp_path, tiny_backbone):
    store = FilesystemStore(tmp_path / "store")
    for i in range(12):
        put_stored(store, tiny_backbone.spec, f"t{i:02d}", seed=i)
    with running(tmp_path / "store", tiny_backbone, load="lazy", warm_up_tasks=0, max_resident_tasks=3) as (client, _):
        first = {f"t{i:02d}": _scores(client, f"t{i:02d}") for i in range(12)}
        ready = _ready(client)
        assert ready["task_slots"] == 3 and ready["tasks"] <= 3 and ready["catalog_tasks"] == 12
        # Every task again, in another order: each evicted one loads again, bit-identical.
        for name in sorted(first, reverse=True):
            assert _scores(client, name) == first[name]
        metrics = client.get("/metrics").text
        evictions = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("bitfit_evictions_total"))
        assert evictions >= 12 - 3
        assert "bitfit_cold_load_seconds_count" in metrics


def test_eviction_never_takes_a_slot_a_request_holds(tmp_path, tiny_backbone):
    store = FilesystemStore(tmp_path / "store")
    for i in range(4):
        put_stored(store, tiny_backbone.spec, f"t{i}", seed=i)
    with running(tmp_path / "store", tiny_backbone, load="lazy", warm_up_tasks=0, max_resident_tasks=2) as (client, app):
        catalog, engine = app.state.services.catalog, app.state.services.engine
        expected = _scores(client, "t0")
        held = catalog.acquire_blocking("t0")  # as a request in flight holds it
        try:
            rows = engine.encode(held, TEXTS)
            before = engine.logits([(held, r) for r in rows])
            for name in ("t1", "t2", "t3", "t1", "t2"):  # two slots, five loads: t0 is the LRU but held
                _scores(client, name)
            after = engine.logits([(held, r) for r in rows])
            assert all((a == b).all() for a, b in zip(before, after))  # its rows were never touched
            # Both slots held (t0 here, and one more): the next cold task is refused, not a wrong answer.
            other = catalog.acquire_blocking("t2")
            try:
                response = client.post("/predict/t3", json={"inputs": "x"})
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "capacity" and "Retry-After" in response.headers
            finally:
                catalog.release(other)
        finally:
            catalog.release(held)
        assert _scores(client, "t0") == expected


def test_an_evicted_task_replaced_meanwhile_serves_its_new_version(tmp_path, tiny_backbone):
    spec = tiny_backbone.spec
    store = FilesystemStore(tmp_path / "store")
    for i in range(3):
        put_stored(store, spec, f"t{i}", seed=i)
    with running(tmp_path / "store", tiny_backbone, load="lazy", warm_up_tasks=0, max_resident_tasks=2) as (client, app):
        v1 = _scores(client, "t0")
        _scores(client, "t1")
        _scores(client, "t2")  # t0 evicted
        assert client.get("/tasks", params={"prefix": "t0"}).json()["tasks"][0]["state"] == "evicted"
        response = client.put("/tasks/t0", files={"file": ("t0.safetensors", dumps(random_bias_set(spec, "t0", seed=99)))})
        assert response.status_code == 201 and response.json()["version"] == 2
        v2 = _scores(client, "t0")
        assert v2 != v1
    with running(tmp_path / "store", tiny_backbone, load="eager") as (fresh, _):  # what v2 must answer
        assert _scores(fresh, "t0") == v2


def test_two_replicas_with_different_budgets_agree_on_every_answer(tmp_path, tiny_backbone):
    store = FilesystemStore(tmp_path / "store")
    names = [f"task-{i}" for i in range(8)]
    for i, name in enumerate(names):
        put_stored(store, tiny_backbone.spec, name, seed=10 + i)
    with (
        running(tmp_path / "store", tiny_backbone, load="lazy", warm_up_tasks=0, max_resident_tasks=2) as (small, _),
        running(tmp_path / "store", tiny_backbone, load="eager", max_resident_tasks=100) as (large, _),
    ):
        for name in names + names[::-1]:
            assert _scores(small, name) == _scores(large, name), name
        assert _ready(small)["tasks"] <= 2 and _ready(large)["tasks"] == 8


def test_the_task_listing_pages_in_name_order_with_a_stable_cursor(tmp_path, tiny_backbone):
    store = FilesystemStore(tmp_path / "store")
    names = sorted([f"a-{i:03d}" for i in range(130)] + [f"b-{i:03d}" for i in range(20)])
    for i, name in enumerate(names):
        put_stored(store, tiny_backbone.spec, name, seed=i)
    with running(tmp_path / "store", tiny_backbone, load="lazy", warm_up_tasks=0, max_resident_tasks=4) as (client, _):
        seen, cursor = [], None
        while True:
            body = client.get("/tasks", params={"limit": 40, **({"cursor": cursor} if cursor else {})}).json()
            assert body["catalog_tasks"] == 150 and len(body["tasks"]) <= 40
            seen += [t["name"] for t in body["tasks"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == names
        page = client.get("/tasks", params={"prefix": "b-", "limit": 15}).json()
        assert [t["name"] for t in page["tasks"]] == names[130:145] and page["next_cursor"]
        rest = client.get("/tasks", params={"prefix": "b-", "cursor": page["next_cursor"]}).json()
        assert [t["name"] for t in rest["tasks"]] == names[145:] and rest["next_cursor"] is None
        assert {t["state"] for t in page["tasks"]} == {"stored"}
        for bad in ({"cursor": "%%%"}, {"limit": 0}, {"limit": 100000}):
            response = client.get("/tasks", params=bad)
            assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error", bad
        missing = client.get("/tasks/a-0505")
        assert missing.status_code == 404
        assert 0 < len(missing.json()["error"]["known_tasks"]) <= 20
        index = client.post("/v2/repository/index", json={"limit": 100})
        assert len(index.json()) == 100 and index.headers["x-bitfit-next-cursor"]
        tail = client.post("/v2/repository/index", json={"cursor": index.headers["x-bitfit-next-cursor"]}).json()
        assert [m["name"] for m in index.json() + tail] == names


def test_the_host_tier_brings_an_evicted_task_back_without_a_store_read(tmp_path, tiny_backbone):
    store = FilesystemStore(tmp_path / "store")
    for i in range(3):
        put_stored(store, tiny_backbone.spec, f"t{i}", seed=i)
    settings = dict(load="lazy", warm_up_tasks=0, max_resident_tasks=2, host_tier_bytes=1 << 24)
    with running(tmp_path / "store", tiny_backbone, **settings) as (client, app):
        catalog = app.state.services.catalog
        read, reads = catalog._read, []
        catalog._read = lambda change: reads.append(change.task) or read(change)
        first = {name: _scores(client, name) for name in ("t0", "t1", "t2")}  # t0 evicted by t2
        assert reads == ["t0", "t1", "t2"] and _ready(client)["tasks"] == 2
        assert _scores(client, "t0") == first["t0"]  # back from host memory, bit-identical
        assert reads == ["t0", "t1", "t2"] and catalog.host_tier.hits == 1
        response = client.put("/tasks/t1", files={"file": ("t1.safetensors", dumps(random_bias_set(tiny_backbone.spec, "t1", seed=50)))})
        assert response.status_code == 201
        for name in ("t2", "t0", "t2"):  # t1 (v2) evicted; its v1 set is still in the tier, under v1's sha256
            _scores(client, name)
        answer = client.post("/predict/t1", json={"inputs": TEXTS, "return_all_scores": True}).json()
        assert answer["version"] == 2 and [p["scores"] for p in answer["predictions"]] != first["t1"]


def test_the_same_bytes_stored_again_are_served_as_the_new_version(tmp_path, tiny_backbone):
    """A version is its number, not only its bytes: every answer names the version that computed it."""
    data = dumps(random_bias_set(tiny_backbone.spec, "t", seed=7))
    with (
        running(tmp_path / "store", tiny_backbone, load="eager") as (writer, _),
        running(tmp_path / "store", tiny_backbone, load="lazy", warm_up_tasks=0) as (reader, _),
    ):
        for version in (1, 2, 3):
            response = writer.post("/tasks", files={"file": ("t.safetensors", data)})
            assert response.status_code == 201 and response.json()["version"] == version
            assert writer.post("/predict/t", json={"inputs": "x"}).json()["version"] == version
            generation = response.headers["x-bitfit-generation"]
            answer = reader.post("/predict/t", json={"inputs": "x"}, params={"min_generation": generation})
            assert answer.json()["version"] == version
