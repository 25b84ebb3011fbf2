"""The step budget (issue 24): how many steps a run plans, when it scores validation, when it may stop."""

import math

import pytest

from tests.training.test_bitfit import tiny_spec
from training.budget import EVALUATIONS, MAX_STEPS, MIN_STEPS, TARGET_EPOCHS, plan
from training.epochs import fit
from training.task import run_task


def test_small_data_gets_the_minimum_and_never_stops_before_it():
    budget = plan(train_rows=1200, batch_size=32)  # 38 steps an epoch: 8 epochs would be 304 steps
    assert budget.steps_per_epoch == 38 and budget.total_steps == MIN_STEPS == budget.min_steps
    assert budget.eval_every == math.ceil(MIN_STEPS / EVALUATIONS) and budget.evaluations == EVALUATIONS
    assert budget.min_evaluations == budget.evaluations  # all of it: early stopping cannot cut it short


def test_large_data_is_capped_and_scored_several_times_an_epoch():
    budget = plan(train_rows=50_000, batch_size=32)  # 1,563 steps an epoch
    assert budget.total_steps == MAX_STEPS and budget.min_steps == MIN_STEPS
    assert budget.steps_per_epoch / budget.eval_every > 10  # many evaluations inside the one (partial) epoch
    assert budget.min_evaluations == math.ceil(MIN_STEPS / budget.eval_every) < budget.evaluations


def test_medium_data_trains_the_target_epochs():
    budget = plan(train_rows=4000, batch_size=32)  # 125 steps an epoch: 8 epochs = 1,000 steps
    assert MIN_STEPS < budget.total_steps == TARGET_EPOCHS * 125 <= MAX_STEPS
    assert budget.eval_every == math.ceil(1000 / EVALUATIONS)


def test_epochs_keep_the_old_plan():
    budget = plan(train_rows=100, batch_size=8, epochs=3)
    assert (budget.total_steps, budget.eval_every, budget.min_steps, budget.evaluations) == (39, 13, 0, 3)


def test_a_minimum_above_the_maximum_wins_and_knobs_are_honoured():
    assert plan(10, 8, min_steps=50, max_steps=20).total_steps == 50
    budget = plan(10, 8, min_steps=5, max_steps=7, evaluations=2)
    assert (budget.total_steps, budget.eval_every, budget.evaluations) == (7, 4, 2)


def _scores_run(scores, patience, min_rounds):
    ran = []

    def run_round(index):
        ran.append(index)
        return {"train_loss": 0.5, "score": scores[index - 1]}

    result = fit(len(scores), patience, 1e-3, run_round, lambda e: [e["score"]], lambda part: f"w{len(ran)}",
                 min_rounds=min_rounds)
    return ran, result


@pytest.mark.parametrize("min_rounds, rounds_run, stopped", [(0, 3, True), (4, 4, True), (6, 6, False)])
def test_patience_waits_for_the_minimum(min_rounds, rounds_run, stopped):
    # best at round 1, never better: patience 2 would stop at round 3
    ran, result = _scores_run([0.9, 0.5, 0.5, 0.5, 0.5, 0.5], patience=2, min_rounds=min_rounds)
    assert len(ran) == rounds_run and result.stopped_early == stopped
    assert result.best_epochs == [1] and result.best_states == ["w1"]


def test_a_late_improvement_resets_patience():
    ran, result = _scores_run([0.5, 0.4, 0.6, 0.5, 0.5, 0.7], patience=2, min_rounds=0)
    assert ran == [1, 2, 3, 4, 5] and result.best_epochs == [3]


def test_a_run_plans_steps_and_scores_validation_on_the_way(tmp_path, tiny_bert_dir):
    # 38 training rows (80% of 48) at batch 8: 5 steps an epoch; 8 epochs = 40 steps, raised to the minimum of 48
    spec = tiny_spec(tmp_path, tiny_bert_dir, epochs=None, min_steps=48, max_steps=60, patience=0)
    report = run_task(spec, tmp_path / "run", progress=False).report
    budget = report["recipe"]["budget"]
    assert report["split"]["sizes"]["train"] == 38 and budget["steps_per_epoch"] == 5
    assert budget["total_steps"] == 48 and budget["eval_every"] == math.ceil(48 / EVALUATIONS) == 4
    history = report["history"]
    assert [h["step"] for h in history] == list(range(4, 49, 4)) and report["recipe"]["steps_run"] == 48
    assert [h["epoch"] for h in history][:3] == [0.8, 1.6, 2.4] and history[-1]["epoch"] == 9.6
    best = max(history, key=lambda h: h["validation"]["accuracy"])  # the first of equals is kept
    assert report["best_epoch"] == best["epoch"] and report["recipe"]["best_step"] == best["step"]
    assert report["validation"] == best["validation"]
    rates = [s["lr"] for s in report["steps"]]
    assert max(rates) == pytest.approx(1e-3) and rates[-1] < 1e-3 / 40  # the decay ends at the planned last step
    assert not report["recipe"]["hit_time_limit"]


def test_the_wall_clock_budget_ends_a_run_after_the_step_that_crossed_it(tmp_path, tiny_bert_dir):
    spec = tiny_spec(tmp_path, tiny_bert_dir, epochs=None, min_steps=48, max_steps=60, max_seconds=1e-6)
    report = run_task(spec, progress=False).report
    assert report["recipe"]["steps_run"] == 1 and len(report["history"]) == 1  # one step, then scored once
    assert report["recipe"]["hit_time_limit"] and report["stopped_early"] and report["recipe"]["best_step"] == 1


def test_epochs_mode_scores_after_each_epoch(tmp_path, tiny_bert_dir):
    report = run_task(tiny_spec(tmp_path, tiny_bert_dir, epochs=2), progress=False).report
    assert [h["epoch"] for h in report["history"]] == [1, 2] and [h["step"] for h in report["history"]] == [5, 10]
    assert report["recipe"]["budget"]["min_steps"] == 0 and report["recipe"]["steps_run"] == 10


def test_a_spec_turns_the_time_budget_off_with_zero_or_null():
    from training.task import TaskSpec

    base = {"name": "t", "train": "d.csv", "text_column": "text", "label_column": "label"}
    assert TaskSpec.from_dict({**base, "max_seconds": 0}).train_config().max_seconds is None
    assert TaskSpec.from_dict({**base, "max_seconds": None}).train_config().max_seconds is None
    assert TaskSpec.from_dict({**base, "max-seconds": "90"}).train_config().max_seconds == 90.0
    assert TaskSpec.from_dict(base).train_config().max_seconds == 480.0
