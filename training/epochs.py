"""The round loop shared by one-task and joint training: best rounds, patience, a finite loss.

A *round* trains for a while and ends with a validation score: one epoch in joint
training, ``eval_every`` optimizer steps in one-task training (training/budget.py).
``fit`` runs rounds until ``epochs`` are done or, with ``patience``, until that many rounds
in a row improved no part's validation score (never before ``min_rounds``). A *part* is
what keeps its own best round: the one task of ``loop.train``, each task of
``joint.train_joint``. A loss that stops being finite ends training with a ConfigError
that says what to change.
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
    history: list[dict]  # one entry per round: train_loss, validation, timing
    best_epochs: list[int]  # per part, the best round, 1-based
    best_states: list[object]  # per part: its snapshot at its best epoch
    stopped_early: bool = False
    best_scores: list[float] = field(default_factory=list)


def fit(
    epochs: int, patience: int, lr: float, run_epoch: Callable[[int], dict],
    scores: Callable[[dict], list[float]], snapshot: Callable[[int], object], deadline: float | None = None,
    min_rounds: int = 0,
) -> Fit:
    """``run_epoch(round)`` trains one round and returns its history entry; ``scores(entry)``
    is each part's validation score (higher is better); ``snapshot(part)`` copies a part's
    weights, kept for the round where it scored best. Patience stops no run before
    ``min_rounds`` rounds. Past ``deadline`` (time.monotonic()) no new round starts: the
    best one so far is kept."""
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
        if patience and stale >= patience and min_rounds <= epoch < epochs:
            result.stopped_early = True
            log.info("early stop: %d rounds without a better validation score", stale)
            break
        if deadline is not None and time.monotonic() >= deadline and epoch < epochs:
            result.stopped_early = True
            log.warning("time limit reached after round %d of %d: keeping the best round so far", epoch, epochs)
            break
    return result
