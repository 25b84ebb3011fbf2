"""A `succeeded` job is answered once this server serves what it published: GET /jobs/{id} and
the event stream wait for the publish's change-log generation, so the very next predict finds the
task, even when the store watcher would not have polled for an hour. A generation the server
never reaches delays the answer by at most SERVABLE_WAIT_S, and the job still reads succeeded."""

from __future__ import annotations

import json

import pytest

from server.http.routes import jobs as job_routes
from tests.server.test_jobs_routes import ADMIN, AUTH, create
from tests.server_support import put_stored, serving


@pytest.fixture
def app(tmp_path, tiny_backbone):
    with serving(tmp_path / "store", tiny_backbone, api_keys=[ADMIN], sync_interval_s=3600) as client:
        yield client


def publish_as_a_worker(app, task: str, generation_offset: int = 0) -> str:
    """What a worker process does: claim the job, store its set, finish with the publish's generation."""
    job = create(app, {"task": task, "hyperparameters": {"epochs": 1}}).json()
    services = app.app.state.services
    lease = services.jobs.claim("test-worker")
    assert lease is not None and lease.job_id == job["id"]
    record = put_stored(services.store, services.engine.spec, task, seed=1)
    services.jobs.finish(lease, "succeeded", {"published": True, "version": record.version,
                                              "generation": record.generation + generation_offset})
    return job["id"]


def test_get_job_succeeded_means_the_next_predict_finds_the_task(app):
    job_id = publish_as_a_worker(app, "served.mood")
    answer = app.get(f"/jobs/{job_id}", headers=AUTH).json()
    assert answer["status"] == "succeeded" and answer["result"]["generation"] >= 1
    predicted = app.post("/predict/served.mood", json={"inputs": "a gorgeous, witty film"}, headers=AUTH)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["version"] == 1


def test_the_event_stream_ends_with_succeeded_once_the_task_serves(app):
    job_id = publish_as_a_worker(app, "served.stream")
    with app.stream("GET", f"/jobs/{job_id}/events", headers={**AUTH, "Accept": "text/event-stream"}) as stream:
        data = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert data[-1]["data"]["status"] == "succeeded"
    assert app.post("/predict/served.stream", json={"inputs": "meh"}, headers=AUTH).status_code == 200


def test_a_generation_never_reached_delays_the_answer_a_bounded_time(app, monkeypatch):
    monkeypatch.setattr(job_routes, "SERVABLE_WAIT_S", 0.3)
    job_id = publish_as_a_worker(app, "served.later", generation_offset=1000)
    answer = app.get(f"/jobs/{job_id}", headers=AUTH)
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
