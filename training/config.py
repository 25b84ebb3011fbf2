"""One training run's settings (``TrainConfig``): what loop.py, scoring.py and the CLIs share."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bias_store.kinds import Pooling
from training.budget import EVALUATIONS, MAX_STEPS, MIN_STEPS
from training.errors import ConfigError
from training.recipe import SCHEDULES, WARMUP_FRACTION


@dataclass
class TrainConfig:
    epochs: int | None = None  # None: the step budget (training/budget.py); N: N epochs, validation after each
    min_steps: int = MIN_STEPS  # step budget: no early stop before this many optimizer steps
    max_steps: int = MAX_STEPS  # step budget: the longest planned run
    evaluations: int = EVALUATIONS  # step budget: validation scores over the planned run
    lr: float | None = None  # None: the method's default (training/bitfit.py)
    head_lr: float | None = None  # None: the method's head rate, or ``lr`` when it has none
    schedule: str = "linear"  # warm-up then linear decay to 0 at the planned end; or "constant"
    warmup_fraction: float = WARMUP_FRACTION
    batch_size: int = 32  # the paper used 8; 32 is 3-4x faster per epoch at the same accuracy here
    max_length: int = 128
    pooling: Pooling = Pooling.CLS
    seed: int = 42
    weight_decay: float = 0.0  # the official code uses none
    clip: float = 1.0  # max gradient norm
    patience: int = 0  # early stopping after this many evaluations without improvement; 0 = off
    eval_batch_size: int = 128
    device: str = "cpu"
    progress: bool = True  # tqdm bar (auto-hidden when stderr is not a terminal)
    eval_train: bool = False  # score the training split at the end (for the generalization gap)
    max_seconds: float | None = None  # training stops after this long, then keeps its best evaluation
    # Told of every step ({"phase", "epoch", "epochs", "step", "total_steps", "loss", "lr"}) and of every
    # evaluation ({"phase": "evaluation", **the epoch's history entry}); may raise to stop the run (a job's cancel).
    observer: Callable[[dict], None] | None = None
    phase: str = "train"  # what the observer is told: "train", or "lr_search" for the short search runs

    def check(self) -> None:
        for name in ("epochs", "batch_size", "max_length", "eval_batch_size", "min_steps", "max_steps", "evaluations"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "head_lr"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.patience < 0 or self.clip <= 0 or self.weight_decay < 0:
            raise ConfigError("patience must be >= 0, clip > 0 and weight decay >= 0")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"max seconds must be > 0, got {self.max_seconds}")
