"""Small real jobs for the worker tests: tiny CSVs, 1 epoch, short rows, a fixed rate."""

from __future__ import annotations

import io
import time
import uuid

import pandas as pd

from training.jobs.config import JobConfig
from training.jobs.queue import JobQueue

WORDS_POS = ["great", "lovely", "wonderful", "moving", "brilliant"]
WORDS_NEG = ["dull", "awful", "boring", "flat", "tedious"]
FAST = {"learning_rate": 0.01, "epochs": 1, "batch_size": 8, "max_length": 32}


def sentiment(n: int, flip: bool = False, offset: int = 0) -> bytes:
    """``n`` rows whose label follows their words (``flip``: every label the wrong way round)."""
    rows = []
    for i in range(offset, offset + n):
        positive = bool(i % 2)
        words = WORDS_POS if positive else WORDS_NEG
        label = "positive" if positive != flip else "negative"
        rows.append({"text": f"the film was {words[i % 5]} and {words[(i + 2) % 5]}", "label": label})
    out = io.StringIO()
    pd.DataFrame(rows).to_csv(out, index=False)
    return out.getvalue().encode()


def submit(queue: JobQueue, task: str, n: int = 32, flip: bool = False, publish: str = "always",
           key: str | None = None, **hyper) -> object:
    train = queue.put_file(sentiment(n, flip), "train.csv", n, ["text", "label"])
    validation = queue.put_file(sentiment(16, offset=1000), "validation.csv", 16, ["text", "label"])
    config = JobConfig.parse({"task": task, "publish": publish, "hyperparameters": {**FAST, **hyper}})
    return queue.submit(config, {"train": train.id, "validation": validation.id}, key)


def wait_for(predicate, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def s3_store(server) -> object:
    from bias_store.backends.s3 import S3Store
    from bias_store.backends.s3.objects import S3Objects
    from tests.seaweedfs import BUCKET

    return S3Store(S3Objects(server.client(), BUCKET, f"w-{uuid.uuid4().hex[:8]}"))
