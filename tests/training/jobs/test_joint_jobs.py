"""Queued jobs that train alike share one joint run; each still gets its own report, events and version."""

from __future__ import annotations

import json

import pytest

from bias_store.backends.folder import FilesystemStore
from tests.training.jobs.support import sentiment
from training.jobs.config import JobConfig
from training.jobs.joint_run import joint_key
from training.jobs.queue import JobQueue
from training.jobs.worker import JobWorker

pytestmark = [pytest.mark.minilm, pytest.mark.slow]
ALIKE = {"method": "bitfit", "hyperparameters": {"learning_rate": 0.01, "epochs": 1, "batch_size": 8, "max_length": 16}}


def put(queue: JobQueue, task: str, flip: bool = False, **config) -> str:
    train = queue.put_file(sentiment(32, flip), "train.csv", 32, ["text", "label"])
    validation = queue.put_file(sentiment(16, offset=500), "validation.csv", 16, ["text", "label"])
    raw = {**ALIKE, "task": task, "publish": "always", **config}
    return queue.submit(JobConfig.parse(raw), {"train": train.id, "validation": validation.id}).id


def test_jobs_that_train_alike_share_one_run_and_are_published_separately(tmp_path):
    store = FilesystemStore(tmp_path / "store")
    queue = JobQueue.for_store(store)
    together = [put(queue, "alpha"), put(queue, "beta", flip=True), put(queue, "gamma")]
    alone = put(queue, "delta", method="bitfit-ln")  # another method: not in the joint run
    assert joint_key(queue.get(alone)) is None and len({joint_key(queue.get(j)) for j in together}) == 1
    worker = JobWorker(queue, store, lease_s=15, joint=4, event_s=0.0)
    worker.run_once()
    for job_id in together:
        record = queue.get(job_id)
        assert record.status == "succeeded", record.error
        assert record.result["joint"]["jobs"] == together and record.result["version"] == 1
        stored = store.get(record.task)[0]
        assert stored.meta.training["method"] == "bitfit-joint" and stored.meta.training["job"]["id"] == job_id
        report = json.loads(queue.artifact(job_id, "report.json"))
        assert report["task"] == record.task and report["joint"]["jobs"] == together and len(report["history"]) == 1
        events = queue.events(job_id)
        assert any("training jointly with 2 other jobs" in e["message"] for e in events)
        assert [e["type"] for e in events].count("metrics") == 1 and len(record.metrics) == 1
    # Each task kept its own head: "beta" learned the flipped labels, the others the true ones.
    accuracy = {queue.get(j).task: queue.get(j).result["validation"]["accuracy"] for j in together}
    assert accuracy["alpha"] > 0.8 and accuracy["gamma"] > 0.8 and accuracy["beta"] < 0.2
    assert queue.get(alone).status == "queued"
    assert worker.run_once().id == alone and queue.get(alone).result["published"]


def test_a_job_cancelled_in_a_joint_run_ends_at_once_and_the_others_go_on(tmp_path):
    import threading
    import time

    from tests.training.jobs.support import wait_for

    store = FilesystemStore(tmp_path / "store")
    queue = JobQueue.for_store(store)
    # Enough steps (80) that the cancel lands while the run trains, not after it published.
    slow = {"hyperparameters": {**ALIKE["hyperparameters"], "epochs": 20}}
    kept, cancelled = put(queue, "kept", **slow), put(queue, "dropped", **slow)
    worker = JobWorker(queue, store, lease_s=15, joint=2, poll_s=0.5)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    wait_for(lambda: queue.get(cancelled).progress.get("step", 0) >= 1, 120, "the joint run's first step")
    asked = time.monotonic()
    queue.cancel(cancelled)
    wait_for(lambda: queue.get(cancelled).status == "cancelled", 5, "the cancel")
    assert time.monotonic() - asked < 5
    thread.join(180)
    assert queue.get(kept).status == "succeeded" and queue.get(kept).result["joint"]["jobs"] == [kept, cancelled]
    assert [r.name for r in store.list()] == ["kept"]
