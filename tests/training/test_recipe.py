"""The default recipe: the schedule's shape, two learning rates, --lr auto chosen on validation, all recorded."""

from __future__ import annotations

import json

import pytest
import torch

from tests.training.test_bitfit import tiny_spec
from training.bitfit import METHODS
from training.lr_search import pick, search_data
from training.recipe import lr_factor, param_groups, warmup_steps
from training.report import rounded
from training.task import run_task


def test_warmup_then_linear_decay_to_zero():
    total, warmup = 100, warmup_steps(100)
    assert warmup == 6
    factors = [lr_factor(step, total, warmup, "linear") for step in range(total)]
    assert factors[:6] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    assert factors[6:] == sorted(factors[6:], reverse=True) and factors[-1] == pytest.approx(1 / 94)
    assert lr_factor(100, total, warmup, "linear") == 0.0
    assert all(lr_factor(s, total, warmup, "constant") == 1.0 for s in (0, 50, 99))


def test_head_and_body_get_their_own_rates():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    groups = param_groups(model, ["0.bias", "1.weight", "1.bias"], ["1.weight", "1.bias"], lr=3e-3, head_lr=1e-2)
    assert [(g["name"], g["lr"], len(g["params"])) for g in groups] == [("body", 3e-3, 1), ("head", 1e-2, 2)]
    assert [g["name"] for g in param_groups(model, ["1.weight"], ["1.weight"], 1e-3, 1e-3)] == ["head"]


def test_lr_auto_is_chosen_on_validation_and_recorded(tmp_path, tiny_bert_dir):
    outcome = run_task(tiny_spec(tmp_path, tiny_bert_dir, epochs=2, lr="auto"), tmp_path / "run", progress=False)
    recipe = outcome.report["recipe"]
    search = recipe["lr_search"]
    candidates = sorted(METHODS["bitfit"].auto_lrs)
    assert list(search["scores"]) == [str(lr) for lr in candidates]
    top = max(search["scores"].values())  # ties (within one validation example) go to the higher rate
    best = max(lr for lr in candidates if search["scores"][str(lr)] >= top - 1 / search["validation_rows"] - 1e-12)
    assert recipe["lr"] == search["lr"] == best == outcome.report["config"]["lr"]
    assert recipe["head_lr"] == METHODS["bitfit"].head_lr and recipe["schedule"] == "linear"
    meta = outcome.bias_set.meta.training
    assert meta["lr"] == best and meta["lr_search"]["scores"] == search["scores"] and meta["head_lr"] == recipe["head_lr"]
    # The learning curve: per step (with the scheduled rate) and per epoch (validation loss).
    steps = outcome.report["steps"]
    assert max(s["lr"] for s in steps) == pytest.approx(best, rel=1e-6) and steps[-1]["lr"] < best / 2  # decayed
    assert all(h["validation_loss"] > 0 for h in outcome.report["history"])
    assert json.loads((tmp_path / "run" / "report.json").read_text())["recipe"] == rounded(recipe)  # floats to 4 digits


def test_the_search_never_sees_the_test_split(tmp_path, tiny_bert_dir):
    from training.data import load_task_data

    data = load_task_data(str(tiny_spec(tmp_path, tiny_bert_dir).train), "text", "label", seed=3)
    small = search_data(data, seed=3)
    assert small.test is None and small.train.texts == data.train.texts  # fewer rows than the cap: all of them


def test_fixed_lr_and_constant_schedule_skip_the_search(tmp_path, tiny_bert_dir):
    outcome = run_task(tiny_spec(tmp_path, tiny_bert_dir, epochs=1, lr=2e-3, head_lr=5e-3, schedule="constant"), progress=False)
    recipe = outcome.report["recipe"]
    assert recipe["lr_search"] is None and (recipe["lr"], recipe["head_lr"]) == (2e-3, 5e-3)
    assert {s["lr"] for s in outcome.report["steps"]} == {2e-3}


def test_the_search_breaks_ties_toward_the_faster_rate():
    # 0.001 and 0.003 within one validation example (1/200) of each other: the higher rate wins
    assert pick({"0.001": 0.800, "0.003": 0.797, "0.01": 0.5}, tie=1 / 200) == 0.003
    assert pick({"0.001": 0.800, "0.003": 0.790, "0.01": 0.5}, tie=1 / 200) == 0.001  # two examples apart: no tie
    assert pick({"0.001": 0.7, "0.003": 0.7, "0.01": 0.7}, tie=0.0) == 0.01
