"""The inbox as a producer: a dropped spec becomes a queued job (or lands in failed/ naming its row)."""

from __future__ import annotations

import json
import os
import shutil
import time

from bias_store.backends.folder import FilesystemStore
from tests.training.jobs.support import sentiment
from training.jobs.queue import JobQueue
from training.publish import Target
from training.worker import Worker


def test_a_dropped_spec_becomes_a_queued_job_once(tmp_path):
    inbox, store = tmp_path / "inbox", FilesystemStore(tmp_path / "store")
    inbox.mkdir()
    (inbox / "train.csv").write_bytes(sentiment(20))
    (inbox / "val.csv").write_bytes(sentiment(6, offset=100))
    spec = {"name": "reviews", "train": "train.csv", "validation": "val.csv", "text_column": "text",
            "label_column": "label", "epochs": 2, "batch_size": 8, "lr": 0.01, "max_length": 64, "patience": 5}
    (inbox / "reviews.json").write_text(json.dumps(spec))
    bad = sentiment(6, offset=100).replace(b"negative", b"neutral", 1)
    (inbox / "bad.csv").write_bytes(bad)
    (inbox / "broken.json").write_text(json.dumps({**spec, "name": "broken", "validation": "bad.csv"}))
    queue = JobQueue.for_store(store)
    worker = Worker(inbox, Target(store=str(tmp_path / "store")), settle_seconds=0, queue=queue)
    results = {r.spec: r for r in worker.run_once()}
    assert results["reviews.json"].ok and not results["broken.json"].ok
    assert "validation file, row 1, column 'label'" in results["broken.json"].error and "neutral" in results["broken.json"].error
    note = json.loads((inbox / "done" / "reviews" / "job.json").read_text())
    assert note["ignored_spec_fields"] == ["patience"]
    job = queue.get(note["job"])
    assert job.status == "queued" and job.task == "reviews" and job.config["publish"] == "always"
    assert job.config["hyperparameters"] == {"learning_rate": 0.01, "epochs": 2, "batch_size": 8, "max_length": 64,
                                             "seed": 42}
    assert queue.file_bytes(job.files["train"]) == sentiment(20) and set(job.files) == {"train", "validation"}
    assert store.list() == []  # nothing trained here
    # The same spec dropped again (a crash before it left processing/) is the same job.
    shutil.copy(inbox / "done" / "reviews" / "reviews.json", inbox / "processing" / "reviews.json")
    worker.run_once()
    assert len(queue.list(limit=10)[0]) == 1


def test_bitfit_worker_to_queue_from_the_command_line(tmp_path):
    from server.process.cli import main

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "train.csv").write_bytes(sentiment(12))
    (inbox / "news.yaml").write_text("name: news\ntrain: train.csv\ntext_column: text\nlabel_column: label\n")
    os.utime(inbox / "news.yaml", (time.time() - 10, time.time() - 10))  # settled: not still being written
    store = tmp_path / "store"
    assert main(["worker", "--inbox", str(inbox), "--store", str(store), "--to-queue", "--once"]) == 0
    [job] = JobQueue.for_store(FilesystemStore(store)).list()[0]
    assert job.task == "news" and job.status == "queued" and job.config["hyperparameters"]["learning_rate"] == "auto"
    assert main(["worker", "--inbox", str(inbox), "--push", "http://127.0.0.1:9", "--to-queue", "--once"]) == 2
