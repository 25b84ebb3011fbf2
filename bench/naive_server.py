"""The naive multi-task server a user would otherwise write: the baseline of bench/http_vs_naive.py.

FastAPI + one transformers ``text-classification`` pipeline on the packaged MiniLM. For
every request it takes a lock, writes the task's biases and head into the model *in
place* (``load_state_dict(strict=False)``), runs the pipeline on that request's texts,
and releases the lock. No batching across requests: concurrent requests queue on the
lock, and the lock is what keeps them from computing with another task's biases.

It serves the same bias sets as the real server (read once from the same store folder)
with the same request/response shape for ``POST /predict/{task}``::

    .venv/bin/python -m bench.naive_server --store DIR --port 8100
"""

from __future__ import annotations

import argparse
import logging
import os
import threading

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

log = logging.getLogger(__name__)


class PredictRequest(BaseModel):
    inputs: str | list[str]


def load_tasks(store_dir: str, spec) -> dict[str, tuple[list[str], dict[str, torch.Tensor]]]:
    """Every task's current bias set from a FilesystemStore folder: name -> (labels, tensors)."""
    from bias_store.backends.folder import FilesystemStore
    from bias_store.validate import validate_bytes

    store = FilesystemStore(store_dir)
    tasks = {}
    for record in store.list():
        _, data = store.get(record.name)
        bias_set = validate_bytes(data, spec)
        tasks[record.name] = (list(bias_set.meta.labels), bias_set.tensors)
    return tasks


def create_app(store_dir: str) -> FastAPI:
    from transformers import AutoTokenizer, pipeline

    from engine.backbone import default_backbone_path, load_backbone, load_classifier

    path = default_backbone_path()
    spec = load_backbone(path, device="cpu").spec  # only for validating the stored sets
    model = load_classifier(path, num_labels=2).eval()
    classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(path), device=-1)
    tasks = load_tasks(store_dir, spec)
    lock = threading.Lock()
    log.info("naive server: %d tasks", len(tasks))

    app = FastAPI(title="naive BitFit server (baseline)")

    @app.get("/readyz")
    def readyz() -> dict:
        return {"status": "ready", "tasks": len(tasks)}

    @app.post("/predict/{task}")
    def predict(task: str, request: PredictRequest) -> dict:  # sync: FastAPI runs it in its threadpool
        if task not in tasks:
            raise HTTPException(404, f"unknown task {task!r}")
        labels, tensors = tasks[task]
        if len(labels) != model.config.num_labels:
            raise HTTPException(422, "the naive server serves 2-label tasks only")
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        with lock:  # without it, concurrent requests would run with another task's biases
            model.load_state_dict(tensors, strict=False)  # copies into the model's own parameters
            model.config.id2label = dict(enumerate(labels))
            outputs = classify(texts, top_k=None, truncation=True)
        predictions = []
        for scores in outputs:
            best = max(scores, key=lambda s: s["score"])
            predictions.append({"label": best["label"], "score": best["score"],
                                "scores": {s["label"]: s["score"] for s in scores}})
        return {"task": task, "predictions": predictions}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a FilesystemStore folder of MiniLM bias sets")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(args.store), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
