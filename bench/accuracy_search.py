"""What ``--lr auto`` would choose, without the run after it (bench/accuracy.py --search-only).

Under the step budget a run at a fixed rate is the very run ``--lr auto`` makes when its
search picks that rate (the same seed, head and batch order), so what the search buys is
measured by running the search alone on each seed and training a full run only where it
picks another rate.
"""

from __future__ import annotations

import dataclasses
import time


def search_only(job: dict) -> dict:
    import torch

    from bias_store.kinds import ProblemType
    from training.bitfit import method as get_method
    from training.data import load_task_data
    from training.lr_search import choose_lr
    from training.model import default_pooling, load_model
    from training.task import TaskSpec

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    paths = job["paths"]
    spec = TaskSpec(task="bench", train=paths["train"], validation=paths["validation"], test=paths["test"],
                    text_column="text", label_column="label", method=job["method"], seed=job["seed"],
                    batch_size=job["batch_size"], max_length=job["max_length"], device=job["device"], backbone=job["backbone"])
    data = load_task_data(spec.train, "text", "label", validation=spec.validation, test=spec.test, seed=spec.seed)
    num_labels = 1 if data.problem_type == ProblemType.REGRESSION else len(data.labels)
    tm = load_model(spec.backbone, num_labels, data.problem_type, spec.seed)
    cfg = dataclasses.replace(spec.train_config(progress=False), pooling=job["pooling"] or default_pooling(spec.backbone))
    cpu = time.process_time()
    choice = choose_lr(tm, data, get_method(spec.method), cfg)
    return {"dataset": job["dataset"], "method": job["method"], "seed": job["seed"], "phase": "search-only",
            "recipe": job["recipe"], "chosen_lr": choice.lr, "scores": choice.scores, "metric": choice.metric,
            "search_train_rows": choice.train_rows, "search_validation_rows": choice.validation_rows,
            "seconds": round(choice.seconds, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}
