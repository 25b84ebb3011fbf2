"""Metrics: a registry per app, bounded task labels, requests counted once per task they name."""

from __future__ import annotations

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
    assert value("bitfit_requests_total", {"task": "a", "status": "200"}) == 1
    assert value("bitfit_requests_total", {"task": UNKNOWN, "status": "200"}) == 1
    assert value("bitfit_requests_total", {"task": "a", "status": "404"}) == 1
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
