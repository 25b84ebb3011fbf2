"""The epoch loop shared by one-task and joint training: best epochs, patience, a finite loss.

``fit`` runs epochs until ``epochs`` are done or, with ``patience``, until that many epochs
in a row improved no part's validation score. A *part* is what keeps its own best epoch:
the one task of ``loop.train``, each task of ``joint.train_joint``. A loss that stops
being finite ends training with a ConfigError that says what to change.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from training.errors import ConfigError

log = logging.getLogger(__name__)


def check_finite(mean_loss: float, epoch: int, lr: float) -> None:
    if not math.isfinite(mean_loss):
        raise ConfigError(f"the loss became {mean_loss} in epoch {epoch}; lower the learning rate (now {lr})")


@dataclass
class Fit:
    history: list[dict]  # one entry per epoch: train_loss, validation, timing
    best_epochs: list[int]  # per part, 1-based
    best_states: list[object]  # per part: its snapshot at its best epoch
    stopped_early: bool = False
    best_scores: list[float] = field(default_factory=list)


def fit(
    epochs: int, patience: int, lr: float, run_epoch: Callable[[int], dict],
    scores: Callable[[dict], list[float]], snapshot: Callable[[int], object], deadline: float | None = None,
) -> Fit:
    """``run_epoch(epoch)`` trains one epoch and returns its history entry; ``scores(entry)``
    is each part's validation score (higher is better); ``snapshot(part)`` copies a part's
    weights, kept for the epoch where it scored best. Past ``deadline`` (time.monotonic())
    no new epoch starts: the best one so far is kept."""
    result = Fit([], [], [])
    stale = 0
    for epoch in range(1, epochs + 1):
        entry = run_epoch(epoch)
        check_finite(entry["train_loss"], epoch, lr)
        result.history.append(entry)
        improved = False
        for part, score in enumerate(scores(entry)):
            if part == len(result.best_scores):  # first epoch: every part starts here
                result.best_scores.append(-math.inf)
                result.best_epochs.append(0)
                result.best_states.append(None)
            if score > result.best_scores[part]:
                result.best_scores[part], result.best_epochs[part] = score, epoch
                result.best_states[part] = snapshot(part)
                improved = True
        stale = 0 if improved else stale + 1
        if patience and stale >= patience:
            result.stopped_early = True
            log.info("early stop: %d epochs without a better validation score", stale)
            break
        if deadline is not None and time.monotonic() >= deadline and epoch < epochs:
            result.stopped_early = True
            log.warning("time limit reached after epoch %d of %d: keeping the best epoch so far", epoch, epochs)
            break
    return result
