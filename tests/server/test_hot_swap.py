"""Hot swap under load: uploads, replaces, rollbacks and deletes while predicts run in parallel.

Every predict answer must be a 200 or a 404 (never 5xx), and all its predictions must
come from ONE version of its task: the engine's own answer for that version's bias set.
"""

from __future__ import annotations

import importlib.util
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
import torch

from engine import Engine
from tests.helpers import random_bias_set
from tests.server_support import TEXTS, replace, serving, upload

needs_onnxruntime = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
TASKS = ["alpha", "beta", "gamma"]
DURATION_S = 3.0


@dataclass
class Traffic:
    """What the threads saw, shared under ``lock``."""

    # (task, version) -> seeds stored under it
    content: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    answers: list[tuple[str, int, list[dict]]] = field(default_factory=list)  # (task, version, each row's scores)
    statuses: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def predictor(client, traffic: Traffic, worker: int) -> None:
    rng = random.Random(worker)
    while not traffic.stop.is_set():
        task = rng.choice(TASKS)
        r = client.post(f"/predict/{task}", json={"inputs": TEXTS})
        with traffic.lock:
            traffic.statuses.append(r.status_code)
            if r.status_code == 200:
                body = r.json()
                traffic.answers.append((task, body["version"], [p["scores"] for p in body["predictions"]]))


def mutator(client, traffic: Traffic, spec) -> None:
    rng = random.Random(99)
    seed = len(TASKS)
    while not traffic.stop.is_set():
        task, action = rng.choice(TASKS), rng.random()
        if action < 0.6:  # upload or replace
            seed += 1
            bs = random_bias_set(spec, task, seed=seed)
            r = replace(client, task, bs) if action < 0.3 else upload(client, bs)
            with traffic.lock:
                traffic.statuses.append(r.status_code)
                if r.status_code == 201:
                    traffic.content[(task, r.json()["version"])].append(seed)
        elif action < 0.8:
            r = client.post(f"/tasks/{task}/rollback")
            with traffic.lock:
                traffic.statuses.append(r.status_code)
        else:
            r = client.delete(f"/tasks/{task}")
            with traffic.lock:
                traffic.statuses.append(r.status_code)
        time.sleep(0.005)


def expected_scores(tiny_backbone, content: dict[tuple[str, int], list[int]]) -> dict[int, torch.Tensor]:
    """The PyTorch engine's own answer for every content that was ever stored, by seed."""
    spec = tiny_backbone.spec
    reference = Engine(tiny_backbone)
    expected: dict[int, torch.Tensor] = {}
    for seeds in content.values():
        for seed in seeds:
            if seed not in expected:
                task = next(t for (t, _), s in content.items() if seed in s)
                reference.register(random_bias_set(spec, task, seed=seed))
                preds = reference.predict(task, TEXTS)
                expected[seed] = torch.tensor([[p.scores[k] for k in ("negative", "positive")] for p in preds])  # [len(TEXTS), 2]
    return expected


@pytest.mark.parametrize("backend, workers", [("torch", 1), pytest.param("onnxruntime", 1, marks=needs_onnxruntime),
                                              pytest.param("onnxruntime", 2, marks=needs_onnxruntime)])
def test_predicts_stay_consistent_while_tasks_change(tmp_path, tiny_backbone, onnx_cache, backend, workers):
    """Workers 2: two forwards at once (BITFIT_INFERENCE_WORKERS), every answer still its version's."""
    spec = tiny_backbone.spec
    traffic = Traffic()

    with serving(tmp_path / "store", tiny_backbone, max_wait_ms=1, backend=backend, onnx_cache=onnx_cache,
                 inference_workers=workers) as client:
        assert client.app.state.services.predictor.batcher.workers == workers
        for seed, task in enumerate(TASKS):
            r = upload(client, random_bias_set(spec, task, seed=seed))
            traffic.content[(task, r.json()["version"])].append(seed)

        threads = [threading.Thread(target=predictor, args=(client, traffic, i)) for i in range(3)]
        threads.append(threading.Thread(target=mutator, args=(client, traffic, spec)))
        for t in threads:
            t.start()
        time.sleep(DURATION_S)
        traffic.stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)

    statuses, answers, content = traffic.statuses, traffic.answers, traffic.content
    assert statuses and all(s < 500 for s in statuses), sorted(set(statuses))
    assert len(answers) > 20, f"only {len(answers)} successful predicts"
    versions_seen = {(task, version) for task, version, _ in answers}
    assert len(versions_seen) > len(TASKS), "the test did not exercise any hot swap"

    # ONNX Runtime agrees with the PyTorch engine to float rounding of a different kernel order.
    atol = 1e-5 if backend == "torch" else 1e-4
    expected = expected_scores(tiny_backbone, content)
    for task, version, scores in answers:
        got = torch.tensor([[s["negative"], s["positive"]] for s in scores])  # [len(TEXTS), 2]
        # Versions restart at 1 after a delete, so (task, version) may name a few contents;
        # the whole answer must equal exactly one of them.
        candidates = [seed for seed in content[(task, version)] if torch.allclose(got, expected[seed], atol=atol, rtol=0)]
        assert len(candidates) >= 1, f"{task} v{version}: answer matches no stored content of that version"
