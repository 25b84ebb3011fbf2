"""How long a run trains: a step budget, not an epoch cap (issue 24).

An epoch cap gives small data few optimizer steps (1,200 rows at batch 32 x 6 epochs is
225 steps, and BitFit was still improving there) and large data many. So the run is
planned in optimizer steps instead:

- the schedule (warm-up, then linear decay to 0) spans ``total_steps``: ``TARGET_EPOCHS``
  passes over the data, but at least ``min_steps`` and at most ``max_steps``;
- validation is scored every ``eval_every`` steps, ``EVALUATIONS`` times over the planned
  run (several times per epoch on large data, about once per epoch or less on small data);
- early stopping counts evaluations without a better score (``patience``), and never
  stops before ``min_steps``: small data always gets its minimum;
- a wall-clock budget (``max_seconds``) bounds large data on a slow machine; it is checked
  after every step, the run then scores validation once more and keeps its best evaluation.

``epochs=N`` keeps the old plan: N epochs, one evaluation per epoch, no minimum.
The defaults and the measurements behind them: docs/TRAINING.md, docs/benchmarks/accuracy.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_STEPS = 600  # optimizer steps before early stopping may end a run
MAX_STEPS = 1000  # the longest planned run, whatever the data's size
TARGET_EPOCHS = 8  # passes over the data when that lands between the two
EVALUATIONS = 12  # validation scores over a planned run
PATIENCE = 3  # evaluations in a row without a better score (a quarter of the run)
MAX_SECONDS = 480.0  # training's wall-clock budget; loading, the last evaluation and the test pass come on top


@dataclass(frozen=True)
class Budget:
    steps_per_epoch: int
    total_steps: int  # the schedule's length: warm-up, then decay to 0 here
    eval_every: int  # optimizer steps between validation scores
    min_steps: int  # no early stop before this many steps

    @property
    def planned_epochs(self) -> float:
        """Passes over the training rows the plan makes (what a job's progress shows)."""
        value = round(self.total_steps / self.steps_per_epoch, 2)
        return int(value) if value == int(value) else value

    @property
    def evaluations(self) -> int:
        return math.ceil(self.total_steps / self.eval_every)

    @property
    def min_evaluations(self) -> int:
        """Evaluations before early stopping may end the run (the one at ``min_steps`` included)."""
        return math.ceil(self.min_steps / self.eval_every)

    def as_dict(self) -> dict:
        return {"steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps, "eval_every": self.eval_every,
                "min_steps": self.min_steps, "planned_evaluations": self.evaluations}


def plan(train_rows: int, batch_size: int, epochs: int | None = None, min_steps: int = MIN_STEPS,
         max_steps: int = MAX_STEPS, evaluations: int = EVALUATIONS) -> Budget:
    """The run's plan for ``train_rows`` rows: ``epochs`` given, the old one; else the step budget."""
    steps_per_epoch = max(1, math.ceil(train_rows / batch_size))
    if epochs is not None:
        return Budget(steps_per_epoch, steps_per_epoch * epochs, steps_per_epoch, 0)
    total = min(max(TARGET_EPOCHS * steps_per_epoch, min_steps), max(max_steps, min_steps))
    return Budget(steps_per_epoch, total, max(1, math.ceil(total / evaluations)), min(min_steps, total))

