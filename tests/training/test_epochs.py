"""epochs.fit, the loop of one-task and joint training: per-part best epochs, patience, a finite loss."""

import math

import pytest

from training.epochs import fit
from training.errors import ConfigError


def run(scores_by_epoch, losses=None, patience=0):
    def run_epoch(epoch):
        loss = (losses or {}).get(epoch, 0.5)
        return {"epoch": epoch, "train_loss": loss, "validation": scores_by_epoch[epoch - 1]}

    return fit(len(scores_by_epoch), patience, 1e-3, run_epoch, lambda entry: entry["validation"], lambda part: f"w{part}")


def test_each_part_keeps_its_own_best_epoch():
    result = run([[0.5, 0.9], [0.7, 0.8], [0.6, 0.95]])
    assert result.best_epochs == [2, 3] and result.best_states == ["w0", "w1"] and not result.stopped_early
    assert len(result.history) == 3


@pytest.mark.parametrize("patience, epochs_run, stopped", [(0, 5, False), (1, 4, True), (2, 5, False), (3, 5, False)])
def test_patience_counts_epochs_where_no_part_improved(patience, epochs_run, stopped):
    # part 0 peaks at epoch 2; part 1 improves once more at epoch 3, which delays the stop
    # (patience 2 runs out at epoch 5, the last planned one: the run ran its plan, not stopped early)
    scores = [[0.5, 0.5], [0.9, 0.6], [0.8, 0.7], [0.8, 0.6], [0.7, 0.6]]
    result = run(scores, patience=patience)
    assert len(result.history) == epochs_run and result.stopped_early == stopped
    assert result.best_epochs == [2, 3]


def test_a_non_finite_loss_stops_training_with_advice():
    with pytest.raises(ConfigError, match="lower the learning rate"):
        run([[0.5], [0.6]], losses={2: math.nan})
