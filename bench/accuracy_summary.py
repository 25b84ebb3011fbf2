"""bench/accuracy.py's summary: per data set and method, test accuracy as mean ± std over
seeds at the rate chosen on validation, costs, and the checks against full fine-tuning
(with Welch's 95% interval of the difference)."""

from __future__ import annotations

import statistics

from bench.stats import difference_interval

METHODS = ("full", "bitfit", "bitfit-ln", "bitfit-qm", "head-only")  # the report's order


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def summarize(runs: list[dict]) -> dict:
    summary: dict = {}
    for dataset in sorted({r["dataset"] for r in runs}):
        rows = [r for r in runs if r["dataset"] == dataset]
        per_method = {m: method_entry([r for r in rows if r["method"] == m]) for m in METHODS if any(r["method"] == m for r in rows)}
        summary[dataset] = {"methods": per_method, "checks": checks(per_method)}
    return summary


def _mean_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key)]
    return statistics.mean(values) if values else None


def method_entry(mine: list[dict]) -> dict:
    """One method's runs on one data set: the rate, test/validation accuracy over seeds, costs."""
    by_lr: dict[float, list[dict]] = {}
    for r in mine:
        by_lr.setdefault(r["lr"], []).append(r)
    # Chosen on validation only, by the search runs (first seed), as the sweep chose it;
    # ties go to the first rate of the grid.
    search = [r for r in mine if r["phase"] == "search"] or mine
    if all(r["phase"] == "auto" for r in mine):  # every run chose its own rate on validation
        lr, chosen, lr_search = "auto", mine, {str(r["seed"]): r["lr"] for r in mine}
    else:
        lr = max(search, key=lambda r: r["validation_accuracy"])["lr"]
        chosen, lr_search = by_lr[lr], {str(r["lr"]): r["validation_accuracy"] for r in search}
    entry = {
        "lr": lr, "lr_search": lr_search, "seeds": sorted(r["seed"] for r in chosen),
        "test_accuracy": mean_std([r["test_accuracy"] for r in chosen]),
        "validation_accuracy": mean_std([r["validation_accuracy"] for r in chosen]),
        "trainable_params": chosen[0]["trainable_params"],
        "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in mine),
        "peak_memory_bytes": _mean_of(mine, "peak_memory_bytes"),
    }
    for key in ("peak_above_runtime_bytes", "training_memory_bytes", "cpu_seconds"):
        if (value := _mean_of(mine, key)) is not None:
            entry[key] = value
    gaps = [r["generalization_gap"] for r in chosen if r.get("generalization_gap") is not None]
    if gaps:
        entry["generalization_gap"] = mean_std(gaps)
    return entry


def checks(per_method: dict) -> dict:
    """BitFit against full fine-tuning (points, Welch's 95% interval, cost ratios); the
    bitfit-qm and bitfit-ln variants against bitfit."""
    out: dict = {}
    if "bitfit" in per_method and "full" in per_method:
        b, f = per_method["bitfit"], per_method["full"]
        out["bitfit_minus_full_test_points"] = 100 * (b["test_accuracy"]["mean"] - f["test_accuracy"]["mean"])
        low, high = difference_interval(b["test_accuracy"], f["test_accuracy"])
        out["bitfit_minus_full_95ci_points"] = [100 * low, 100 * high]
        out["bitfit_within_1_point_of_full"] = out["bitfit_minus_full_test_points"] >= -1.0
        out["epoch_time_ratio_bitfit_over_full"] = b["epoch_seconds"] / f["epoch_seconds"]
        for key in ("peak_memory_bytes", "training_memory_bytes", "peak_above_runtime_bytes"):
            if b.get(key) and f.get(key):
                out[f"{key.removesuffix('_bytes')}_ratio_bitfit_over_full"] = b[key] / f[key]
        if "generalization_gap" in b and "generalization_gap" in f:
            out["gap_bitfit_smaller_than_full"] = b["generalization_gap"]["mean"] < f["generalization_gap"]["mean"]
    for variant, short in (("bitfit-qm", "qm"), ("bitfit-ln", "ln")):
        if "bitfit" in per_method and variant in per_method:
            points = 100 * (per_method[variant]["test_accuracy"]["mean"] - per_method["bitfit"]["test_accuracy"]["mean"])
            out[f"{short}_minus_bitfit_test_points"] = points
    if "qm_minus_bitfit_test_points" in out:
        out["qm_within_2_points_of_bitfit"] = out["qm_minus_bitfit_test_points"] >= -2.0
    return out
