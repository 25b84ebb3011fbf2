"""Lazy loading (BITFIT_LOAD=lazy): ready once the catalog is read, each task loaded on first use.

Real uvicorn servers on real store folders: the first request for a task loads it and
answers exactly what an eager server answers; concurrent first requests share one load;
a corrupt task fails alone, with the reason, and is reported; the change log of a task
that is not loaded only updates the catalog.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bias_store import FilesystemStore
from tests.helpers import wait_until
from tests.server_support import TEXTS, put_stored, running


def _validations(client: httpx.Client) -> float:
    """Bias sets validated so far (each load validates its file once)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("bitfit_validation_seconds_count"):
            return float(line.split()[-1])
    return 0.0


def test_first_use_loads_the_task_and_answers_like_an_eager_server(tmp_path, tiny_backbone):
    spec = tiny_backbone.spec
    store = FilesystemStore(tmp_path / "s")
    for i, name in enumerate(("alpha", "bad", "beta")):
        put_stored(store, spec, name, seed=i)
    (store.folders.dir("bad") / "v000001.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with running(tmp_path / "s", tiny_backbone, load="eager") as (eager, _):
        expected = eager.post("/predict", json={"items": [{"task": "alpha", "inputs": TEXTS}, {"task": "beta", "inputs": TEXTS}]})
        assert expected.status_code == 200
    with running(tmp_path / "s", tiny_backbone, load="lazy", warm_up_tasks=0) as (c, _):
        ready = c.get("/readyz").json()
        # Ready without reading a bias set: nothing loaded, the corrupt file not even seen yet.
        assert (ready["load"], ready["tasks"], ready["catalog_tasks"], ready["unhealthy_tasks"]) == ("lazy", 0, 3, {})
        listed = c.get("/tasks").json()["tasks"]  # from the catalog: no file read, so "bad" is not known bad yet
        assert [(t["name"], t["state"], t["loaded"]) for t in listed] == [
            ("alpha", "stored", False), ("bad", "stored", False), ("beta", "stored", False)]
        answer = c.post("/predict", json={"items": [{"task": "alpha", "inputs": TEXTS}, {"task": "beta", "inputs": TEXTS}]})
        assert answer.status_code == 200 and answer.json() == expected.json()
        assert [t["loaded"] for t in c.get("/tasks").json()["tasks"]] == [True, False, True]

        refused = c.post("/predict/bad", json={"inputs": TEXTS})  # fails alone, saying why
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "task_unhealthy" and "bad" in error["message"] and "bytes" in error["reason"]
        assert c.post("/predict/bad", json={"inputs": "x"}).status_code == 409  # remembered: no second read
        assert "bad" in c.get("/readyz").json()["unhealthy_tasks"]
        assert [u["name"] for u in c.get("/tasks").json()["unhealthy"]] == ["bad"]
        assert [t["state"] for t in c.get("/tasks").json()["tasks"]] == ["resident", "unservable", "resident"]
        assert c.post("/predict/alpha", json={"inputs": TEXTS}).status_code == 200  # the others serve on
        missing = c.post("/predict/nope", json={"inputs": "x"})
        assert missing.status_code == 404 and "alpha" in missing.json()["error"]["known_tasks"]  # hints stored tasks


def test_concurrent_first_requests_load_the_task_once(tmp_path, tiny_backbone):
    store = FilesystemStore(tmp_path / "s")
    put_stored(store, tiny_backbone.spec, "hot", seed=1)
    with running(tmp_path / "s", tiny_backbone, load="lazy", warm_up_tasks=0) as (c, app):
        catalog = app.state.services.catalog
        read, reads = catalog._read, []

        def slow_read(change):
            reads.append(change.task)
            time.sleep(0.5)  # the real read, slowed: a wide window for a second load to start
            return read(change)

        catalog._read = slow_read
        before = _validations(c)
        with ThreadPoolExecutor(8) as pool:
            answers = [pool.submit(c.post, "/predict/hot", json={"inputs": [text]}) for text in TEXTS * 2]
            statuses = [a.result().status_code for a in answers]
        assert statuses == [200] * 8
        assert reads == ["hot"] and _validations(c) - before == 1  # one read + validation for eight requests
        assert c.get("/readyz").json()["tasks"] == 1


def test_the_log_of_an_unloaded_task_updates_the_catalog_and_pins_still_work(tmp_path, tiny_backbone):
    spec = tiny_backbone.spec
    store = FilesystemStore(tmp_path / "s")
    for name, seed in (("idle", 1), ("gone", 2), ("used", 3)):
        put_stored(store, spec, name, seed)
    with running(tmp_path / "s", tiny_backbone, load="auto", lazy_above_tasks=2, warm_up_tasks=0) as (c, _):
        assert c.get("/readyz").json()["load"] == "lazy"  # 3 tasks > 2: auto chose lazy
        assert c.post("/predict/used", json={"inputs": "x"}).json()["version"] == 1
        validated = _validations(c)
        writer = FilesystemStore(tmp_path / "s")  # another process
        put_stored(writer, spec, "idle", 4)
        writer.delete("gone")
        put_stored(writer, spec, "fresh", 5)
        last = put_stored(writer, spec, "used", 6).generation
        listed = c.get("/tasks", params={"min_generation": last}).json()["tasks"]
        assert {t["name"]: (t["version"], t["loaded"]) for t in listed} == {
            "fresh": (1, False), "idle": (2, False), "used": (2, True)  # the loaded task was registered again
        }
        assert _validations(c) - validated == 1  # only "used" was read: the others are catalog entries
        assert c.post("/predict/gone", json={"inputs": "x"}).status_code == 404
        assert c.post("/predict/idle", json={"inputs": "x"}).json()["version"] == 2
        pinned = c.post("/predict/fresh?version=1", json={"inputs": "x"})
        assert pinned.status_code == 200 and pinned.json()["version"] == 1
        assert c.post("/predict/idle?version=1", json={"inputs": "x"}).json()["version"] == 1  # a kept version
        assert c.delete("/tasks/fresh").status_code == 204
        assert c.post("/predict/fresh", json={"inputs": "x"}).status_code == 404


def test_warm_up_loads_the_newest_tasks_in_the_background(tmp_path, tiny_backbone):
    store = FilesystemStore(tmp_path / "s")
    for i in range(4):
        put_stored(store, tiny_backbone.spec, f"t{i}", seed=i)
    with running(tmp_path / "s", tiny_backbone, load="lazy", warm_up_tasks=2) as (c, _):
        assert wait_until(lambda: c.get("/readyz").json()["tasks"] == 2, timeout=10)
        loaded = {t["name"] for t in c.get("/tasks").json()["tasks"] if t["loaded"]}
        assert loaded == {"t2", "t3"}  # the most recently changed first
        assert c.post("/predict/t0", json={"inputs": "x"}).status_code == 200
