"""Metrics: a registry per app, bounded task labels, requests counted once per task they name."""

from __future__ import annotations

import time

from server.process.metrics import OTHER, UNKNOWN, Metrics, TaskLabels


def test_task_labels_are_bounded_and_reserved_names_cannot_be_claimed():
    labels = TaskLabels(max_tasks=2)
    assert [labels(t) for t in ("a", OTHER, "b", "c", "a")] == ["a", OTHER, "b", OTHER, "a"]
    assert labels(UNKNOWN) == OTHER


def test_requests_count_each_named_task_once_unknown_ones_under_unknown():
    metrics = Metrics(max_task_labels=10)
    loaded = {"a", "b"}.__contains__
    metrics.observe_request(["a", "a", "b", "nope"], 200, 0.01, loaded)
    metrics.observe_request(["a"], 404, 0.02, loaded)
    value = metrics.registry.get_sample_value
    predict = {"route": "/predict/{task}", "method": "POST", "protocol": "native"}
    assert value("bitfit_requests_total", {"task": "a", "status": "200", **predict}) == 1
    assert value("bitfit_requests_total", {"task": UNKNOWN, "status": "200", **predict}) == 1
    assert value("bitfit_requests_total", {"task": "a", "status": "404", **predict}) == 1
    assert value("bitfit_request_latency_seconds_count", {"task": "a"}) == 1  # latency of answered requests only


def test_two_apps_metrics_do_not_collide_and_the_catalog_gauges_read_live(tiny_backbone):
    from functools import partial

    from engine import Engine
    from server.catalog.catalog import TaskCatalog

    first, second = Metrics(), Metrics()
    engine = Engine(tiny_backbone, capacity=8, grow=False)
    catalog = TaskCatalog(engine, partial(lambda change: None), None)
    first.track_catalog(catalog)
    assert b"bitfit_tasks_loaded 0.0" in first.render() and b"bitfit_task_slots 8.0" in first.render()
    catalog.resident = 2  # what two loads leave
    assert b"bitfit_tasks_loaded 2.0" in first.render()
    assert b"bitfit_tasks_loaded" not in second.render()  # another app's registry knows nothing of it


def test_no_created_series_and_a_forgotten_task_loses_its_series():
    metrics = Metrics(max_task_labels=10)
    loaded = {"a", "b"}.__contains__
    metrics.observe_request(["a", "b"], 200, 0.01, loaded)
    metrics.observe_request(["a"], 503, 0.01, loaded)
    text = metrics.render().decode()
    assert "_created" not in text  # counters are not doubled by their creation time
    metrics.forget_task("a")
    text = metrics.render().decode()
    assert 'task="a"' not in text and 'task="b"' in text
    metrics.observe_request(["a"], 200, 0.01, loaded)  # a task of the same name served again: a new series, counted
    text = metrics.render().decode()
    assert _value(text, "bitfit_requests_total", task="a", status="200") == 1.0
    assert _value(text, "bitfit_requests_total", task="b", status="200") == 1.0


def _value(text: str, name: str, **labels: str) -> float:
    """One sample's value from the exposition text (labels: a subset that must match)."""
    from prometheus_client.parser import text_string_to_metric_families

    found = [s.value for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_requests_are_told_apart_by_route_and_protocol(client, tiny_backbone):
    from tests.helpers import random_bias_set
    from tests.server_support import upload

    assert upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1)).status_code == 201
    client.get("/tasks")
    client.post("/predict/t", json={"inputs": ["a", "bb"]})
    client.post("/predict/t?format=hf", json={"inputs": "a"})
    client.post("/models/t", json={"inputs": "a"})
    client.post("/v2/models/t/infer", json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]})
    text = client.get("/metrics").text
    total = "bitfit_requests_total"
    assert _value(text, total, route="/tasks", method="POST", status="201", task="") == 1  # an upload
    assert _value(text, total, route="/tasks", method="GET", status="200", protocol="native") == 1
    assert _value(text, total, route="/predict/{task}", protocol="native", task="t") == 1
    assert _value(text, total, route="/predict/{task}", protocol="hf", task="t") == 1
    assert _value(text, total, route="/models/{task}", protocol="hf", task="t") == 1
    assert _value(text, total, route="/v2/models/{task}/infer", protocol="oip", task="t", status="200") == 1
    assert 'task="t"' in text and "/metrics" not in text.split("bitfit_requests_total", 1)[1]  # scrapes are not counted
    assert _value(text, "bitfit_rows_total") == 5  # 2 + 1 + 1 + 1
    assert _value(text, "bitfit_tokens_total") >= 5 * 3  # [CLS] x [SEP] at least


def test_admitted_tokens_store_generation_and_sync_age(client, tiny_backbone):
    from tests.helpers import random_bias_set
    from tests.server_support import upload

    services = client.app.state.services
    before = _value(client.get("/metrics").text, "bitfit_store_generation")
    assert upload(client, random_bias_set(tiny_backbone.spec, "t", seed=1)).json()["generation"] == before + 1
    deadline = time.monotonic() + 5
    while services.sync.generation.value <= before and time.monotonic() < deadline:
        time.sleep(0.02)  # the watcher's next poll applies the upload's log entry
    text = client.get("/metrics").text
    assert _value(text, "bitfit_store_generation") == before + 1
    assert _value(text, "bitfit_store_sync_ok") == 1 and _value(text, "bitfit_store_sync_age_seconds") == 0
    assert _value(text, "bitfit_admitted_tokens") == 0
    assert _value(text, "bitfit_admitted_tokens_limit") == services.settings.max_inflight_tokens
    services.predictor.budget.admit(40)  # as a request in flight holds them
    try:
        assert _value(client.get("/metrics").text, "bitfit_admitted_tokens") == 40
    finally:
        services.predictor.budget.release(40)


def test_sync_age_grows_while_the_store_is_unreachable():
    from types import SimpleNamespace

    sync = SimpleNamespace(error=None, generation=SimpleNamespace(value=7))
    metrics = Metrics()
    metrics.track_sync(sync)
    value = metrics.registry.get_sample_value
    assert value("bitfit_store_generation") == 7 and value("bitfit_store_sync_age_seconds") == 0
    sync.error = "OSError: the store is gone"  # what a failed poll leaves
    time.sleep(0.05)
    assert value("bitfit_store_sync_ok") == 0 and value("bitfit_store_sync_age_seconds") >= 0.05
    sync.error = None
    assert value("bitfit_store_sync_ok") == 1 and value("bitfit_store_sync_age_seconds") == 0
