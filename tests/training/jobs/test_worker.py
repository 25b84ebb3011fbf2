"""The job worker on the real packaged MiniLM: train, publish by policy, exactly once, cancel, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bias_store.backends.folder import FilesystemStore
from tests.training.jobs.support import s3_store, submit, wait_for
from training.jobs.publishing import job_version, publish_once
from training.jobs.queue import JobQueue
from training.jobs.worker import JobWorker

pytestmark = [pytest.mark.minilm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path):
    if request.param == "folder":
        return FilesystemStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("seaweedfs"))


def test_a_job_trains_reports_progress_and_publishes_its_version(store):
    queue = JobQueue.for_store(store)
    job = submit(queue, "reviews", epochs=2)
    record = JobWorker(queue, store, lease_s=10, event_s=0.0).run_once()
    assert record.id == job.id and record.status == "succeeded", record.error
    assert record.result["published"] and record.result["version"] == 1
    assert record.learning_rate == 0.01 and record.attempts == 1
    assert [m["epoch"] for m in record.metrics] == [1, 2] and "accuracy" in record.metrics[0]["validation"]
    assert record.progress["step"] == record.progress["total_steps"] == 8 and record.progress["eta_s"] == 0
    types = [e["type"] for e in queue.events(job.id)]
    assert types[0] == "status" and types[-1] == "status" and "progress" in types and types.count("metrics") == 2
    assert {"report.json", "learning_curves.png", "confusion_matrix.png"} <= set(queue.artifacts(job.id))
    stored, _ = store.get("reviews")
    assert stored.versions == (1,) and stored.meta.training["job"]["id"] == job.id
    assert job_version(store, "reviews", job.id) == 1


def test_if_better_refuses_a_worse_set_and_never_publishes_nothing(tmp_path):
    store = FilesystemStore(tmp_path / "store")
    queue = JobQueue.for_store(store)
    worker = JobWorker(queue, store, lease_s=10)
    good = submit(queue, "reviews", publish="if_better")  # a new task: if_better publishes
    # Trained on labels the wrong way round: a genuinely worse set, scored as served.
    worse = submit(queue, "reviews", flip=True, publish="if_better")
    never = submit(queue, "reviews", publish="never")
    first, second, third = (worker.run_once() for _ in range(3))
    assert first.id == good.id and first.result["version"] == 1 and "new task" in first.result["decision"]["reason"]
    assert second.id == worse.id and second.status == "succeeded" and not second.result["published"]
    scores = second.result["scores"]
    assert scores["new"]["accuracy"] < scores["current"]["accuracy"] and scores["current_version"] == 1
    assert "worse, not published" in second.result["decision"]["reason"]
    assert third.id == never.id and not third.result["published"] and "report.json" in queue.artifacts(never.id)
    assert store.get("reviews")[0].versions == (1,)
    # The same good job again is not worse than v1: published, both scores in the version's metadata.
    again = submit(queue, "reviews", publish="if_better")
    assert worker.run_once().result["version"] == 2
    meta = store.get("reviews")[0].meta.training["job"]
    assert meta["id"] == again.id and meta["scores"]["new"]["accuracy"] >= meta["scores"]["current"]["accuracy"]


def test_cancel_stops_a_running_job_within_5_s_and_publishes_nothing(tmp_path):
    store = FilesystemStore(tmp_path / "store")
    queue = JobQueue.for_store(store)
    job = submit(queue, "long", n=400, epochs=5)
    worker = JobWorker(queue, store, lease_s=10, poll_s=0.5)
    done: list = []
    thread = threading.Thread(target=lambda: done.append(worker.run_once()))
    thread.start()
    wait_for(lambda: queue.get(job.id).progress.get("step", 0) >= 1, 120, "the first training step")
    asked = time.monotonic()
    assert queue.cancel(job.id).cancel_requested
    wait_for(lambda: queue.get(job.id).status == "cancelled", 5, "the cancel")
    assert time.monotonic() - asked < 5
    thread.join(30)
    assert done[0].status == "cancelled" and not done[0].result["published"]
    assert store.list() == []


def test_a_worker_killed_mid_job_loses_it_and_another_publishes_it_once(tmp_path):
    store = FilesystemStore(tmp_path / "store")
    queue = JobQueue.for_store(store)
    # 120 steps: long enough that the kill lands mid-job on a fast machine (12 steps once ended
    # between the first progress record and the SIGKILL).
    job = submit(queue, "killed", n=96, max_length=16, epochs=10)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "server.process.cli", "jobs", "worker", "--store",
                             str(tmp_path / "store"), "--lease", "3", "--device", "cpu", "--once", "--worker-id", "doomed"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: queue.get(job.id).progress.get("step", 0) >= 1, 180, "the killed worker's first step")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert queue.get(job.id).worker == "doomed" and queue.get(job.id).status == "running"
    survivor = JobWorker(queue, store, worker_id="survivor", lease_s=10)
    assert survivor.run_once() is None  # the lease has not expired yet
    time.sleep(3.5)
    record = survivor.run_once()
    assert record.id == job.id and record.status == "succeeded" and record.attempts == 2
    assert store.get("killed")[0].versions == (1,)
    messages = [e["message"] for e in queue.events(job.id)]
    assert any("lease of worker doomed expired" in m for m in messages)


def test_a_retry_after_a_publish_finds_the_version_and_does_not_publish_again(tmp_path, minilm_backbone):
    from tests.helpers import random_bias_set

    store = FilesystemStore(tmp_path / "store")
    queue = JobQueue.for_store(store)
    job = submit(queue, "once")
    first = queue.claim("w1", lease_s=0.5)
    bias_set = random_bias_set(minilm_backbone.spec, "once", ["negative", "positive"])
    assert publish_once(store, queue, first, bias_set, minilm_backbone.spec, {"policy": "always"}) == (1, store.generation(), True)
    assert queue.get(job.id).publishing["attempt"] == 1
    time.sleep(0.7)  # attempt 1 dies after storing its version, before finishing the job
    record = JobWorker(queue, store, worker_id="w2", lease_s=10).run_once()
    assert record.status == "succeeded" and record.attempts == 2 and record.result["version"] == 1
    assert record.result["generation"] == store.generation() >= 1  # the newest entry: it has the earlier publish
    assert "earlier attempt" in record.result["decision"]["reason"]
    assert store.get("once")[0].versions == (1,)
