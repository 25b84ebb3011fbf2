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

import pytest
import torch

from engine import Engine
from tests.helpers import random_bias_set
from tests.server_support import TEXTS, replace, serving, upload

needs_onnxruntime = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
TASKS = ["alpha", "beta", "gamma"]
DURATION_S = 3.0


@pytest.mark.parametrize("backend", ["torch", pytest.param("onnxruntime", marks=needs_onnxruntime)])
def test_predicts_stay_consistent_while_tasks_change(tmp_path, tiny_backbone, onnx_cache, backend):
    spec = tiny_backbone.spec
    content: dict[tuple[str, int], list[int]] = defaultdict(list)  # (task, version) -> seeds stored under it
    answers: list[tuple[str, int, list[dict]]] = []
    statuses: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()

    with serving(tmp_path / "store", tiny_backbone, max_wait_ms=1, backend=backend, onnx_cache=onnx_cache) as client:
        for seed, task in enumerate(TASKS):
            r = upload(client, random_bias_set(spec, task, seed=seed))
            content[(task, r.json()["version"])].append(seed)

        def predictor(worker: int) -> None:
            rng = random.Random(worker)
            while not stop.is_set():
                task = rng.choice(TASKS)
                r = client.post(f"/predict/{task}", json={"inputs": TEXTS})
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        body = r.json()
                        answers.append((task, body["version"], [p["scores"] for p in body["predictions"]]))

        def mutator() -> None:
            rng = random.Random(99)
            seed = len(TASKS)
            while not stop.is_set():
                task, action = rng.choice(TASKS), rng.random()
                if action < 0.6:  # upload or replace
                    seed += 1
                    bs = random_bias_set(spec, task, seed=seed)
                    r = replace(client, task, bs) if action < 0.3 else upload(client, bs)
                    with lock:
                        statuses.append(r.status_code)
                        if r.status_code == 201:
                            content[(task, r.json()["version"])].append(seed)
                elif action < 0.8:
                    r = client.post(f"/tasks/{task}/rollback")
                    with lock:
                        statuses.append(r.status_code)
                else:
                    r = client.delete(f"/tasks/{task}")
                    with lock:
                        statuses.append(r.status_code)
                time.sleep(0.005)

        threads = [threading.Thread(target=predictor, args=(i,)) for i in range(3)] + [threading.Thread(target=mutator)]
        for t in threads:
            t.start()
        time.sleep(DURATION_S)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)

    assert statuses and all(s < 500 for s in statuses), sorted(set(statuses))
    assert len(answers) > 20, f"only {len(answers)} successful predicts"
    versions_seen = {(task, version) for task, version, _ in answers}
    assert len(versions_seen) > len(TASKS), "the test did not exercise any hot swap"

    # The PyTorch engine's own answers for every content that was ever stored (ONNX Runtime
    # agrees with it to float rounding of a different kernel order).
    atol = 1e-5 if backend == "torch" else 1e-4
    reference = Engine(tiny_backbone)
    expected: dict[int, torch.Tensor] = {}
    for seeds in content.values():
        for seed in seeds:
            if seed not in expected:
                task = next(t for (t, _), s in content.items() if seed in s)
                reference.register(random_bias_set(spec, task, seed=seed))
                preds = reference.predict(task, TEXTS)
                expected[seed] = torch.tensor([[p.scores[k] for k in ("negative", "positive")] for p in preds])

    for task, version, scores in answers:
        got = torch.tensor([[s["negative"], s["positive"]] for s in scores])  # [len(TEXTS), 2]
        # Versions restart at 1 after a delete, so (task, version) may name a few contents;
        # the whole answer must equal exactly one of them.
        candidates = [seed for seed in content[(task, version)] if torch.allclose(got, expected[seed], atol=atol, rtol=0)]
        assert len(candidates) >= 1, f"{task} v{version}: answer matches no stored content of that version"
