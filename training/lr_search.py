"""``--lr auto``: one short run per candidate rate on a slice of the data, scored on validation.

Each candidate trains SEARCH_EPOCHS epochs over at most SEARCH_ROWS training rows (with
the real run's schedule shape) and is scored on at most SEARCH_VALIDATION_ROWS validation
rows, after each epoch; its score is the mean of those, steadier than one score after one
epoch (issue 24: one short epoch put 1e-3 and 3e-3 level, or apart by less than one
validation example). Scores within one validation example of the best count as a tie,
and a tie goes to the highest of them: the rate that trains fastest. The test split is
never touched. The trained tensors are put back between candidates, so the real run
starts from the same initial head.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass

import torch

from training.bitfit import Method, prepare
from training.data import Split, TaskData
from training.loop import TrainConfig, train
from training.model import TrainModel

log = logging.getLogger(__name__)

SEARCH_ROWS = 1024  # training rows per candidate; all of them when the task has fewer
SEARCH_VALIDATION_ROWS = 512
SEARCH_EPOCHS = 2


@dataclass
class LrChoice:
    lr: float
    scores: dict[str, float]  # str(candidate rate) -> validation score of its short run
    metric: str
    train_rows: int
    validation_rows: int
    seconds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _sample(split: Split, limit: int, seed: int, tag: str) -> Split:
    if len(split) <= limit:
        return split
    rows = sorted(random.Random(seed).sample(range(len(split)), limit))
    # A distinct source keeps a shared token cache from mixing it up with the whole split.
    return Split(f"{split.source}#{tag}-{seed}-{limit}", [split.texts[i] for i in rows], [split.targets[i] for i in rows])


def search_data(data: TaskData, seed: int) -> TaskData:
    """The slice the candidates train and are scored on (no test split)."""
    return dataclasses.replace(
        data, train=_sample(data.train, SEARCH_ROWS, seed, "search"),
        validation=_sample(data.validation, SEARCH_VALIDATION_ROWS, seed, "search"), test=None,
    )


def choose_lr(tm: TrainModel, data: TaskData, method: Method, cfg: TrainConfig, token_cache: dict | None = None) -> LrChoice:
    """The candidate of ``method.auto_lrs`` whose short run scores best on validation (ties: the higher rate)."""
    started = time.perf_counter()
    keys = prepare(tm.model, tm.spec, method)
    initial = {k: tm.model.get_parameter(k).detach().clone() for k in keys}
    small = search_data(data, cfg.seed)
    short = dataclasses.replace(cfg, lr=None, epochs=SEARCH_EPOCHS, patience=0, progress=False, eval_train=False, phase="lr_search")
    scores: dict[str, float] = {}
    metric = ""
    for lr in sorted(method.auto_lrs):
        result = train(tm, small, method, dataclasses.replace(short, lr=lr), token_cache)
        metric = result.selection_metric
        scores[str(lr)] = sum(h["validation"][metric] for h in result.history) / len(result.history)
        _restore(tm, initial)
        log.info("lr search: %g scored validation %s %.4f", lr, metric, scores[str(lr)])
    best = pick(scores, 1 / len(small.validation))
    return LrChoice(best, scores, metric, len(small.train), len(small.validation), time.perf_counter() - started)


def pick(scores: dict[str, float], tie: float) -> float:
    """The highest rate whose score is within ``tie`` (one validation example) of the best score."""
    top = max(scores.values())
    return max(float(lr) for lr, score in scores.items() if score >= top - tie - 1e-12)


def _restore(tm: TrainModel, values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, value in values.items():
            tm.model.get_parameter(key).copy_(value)
