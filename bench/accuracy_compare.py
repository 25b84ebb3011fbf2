"""Tables from saved runs: test accuracy per (data set, method, recipe) over seeds, and each
group against a reference group with Welch's 95% interval (bench/accuracy.py --compare).

Runs from before the step budget carry no ``recipe``; they are labelled by their plan
(``epochs6`` for at most 6 epochs). ``--search-only`` lines are left out.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.stats import difference_interval


def recipe_of(run: dict) -> str:
    return run.get("recipe") or (f"epochs{run['epochs']}" if run.get("epochs") else "default")


def load(paths: list[str]) -> list[dict]:
    runs = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                run = json.loads(line)
                if "test_accuracy" in run:
                    runs.append(run)
    return runs


def groups(runs: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = {}
    for run in runs:
        out.setdefault((run["dataset"], run["method"], recipe_of(run)), []).append(run)
    return {key: sorted(rows, key=lambda r: r["seed"]) for key, rows in sorted(out.items())}


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def table(runs: list[dict], reference: str | None) -> list[dict]:
    """One row per group; with ``reference`` ("METHOD@RECIPE"), the difference to that group of the same data set."""
    grouped = groups(runs)
    rows = []
    for (dataset, method, recipe), mine in grouped.items():
        test = _stats([r["test_accuracy"] for r in mine])
        row = {"dataset": dataset, "method": method, "recipe": recipe, "seeds": [r["seed"] for r in mine],
               "test": test, "validation": _stats([r["validation_accuracy"] for r in mine]),
               "cpu_seconds": statistics.mean(r["cpu_seconds"] for r in mine) if all(r.get("cpu_seconds") for r in mine) else None,
               "lrs": [r["lr"] for r in mine], "steps_run": [r.get("steps_run") for r in mine],
               "best_epoch": [r.get("best_epoch") for r in mine]}
        if reference:
            ref_method, _, ref_recipe = reference.partition("@")
            other = grouped.get((dataset, ref_method, ref_recipe))
            if other is not None and other is not mine:
                ref = _stats([r["test_accuracy"] for r in other])
                low, high = difference_interval(test, ref)
                row["minus_reference_points"] = 100 * (test["mean"] - ref["mean"])
                row["welch95_points"] = [100 * low, 100 * high]
        rows.append(row)
    return rows


def markdown(rows: list[dict], reference: str | None) -> str:
    head = "| data set | method | recipe | seeds | test accuracy | validation | CPU s / run |"
    head += f" − {reference} (Welch 95%) |" if reference else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cpu = f"{r['cpu_seconds']:.0f}" if r["cpu_seconds"] else "—"
        line = (f"| {r['dataset']} | {r['method']} | {r['recipe']} | {len(r['seeds'])} | {r['test']['mean']:.3f} ± "
                f"{r['test']['std']:.3f} | {r['validation']['mean']:.3f} ± {r['validation']['std']:.3f} | {cpu} |")
        if reference:
            if "minus_reference_points" in r:
                low, high = r["welch95_points"]
                line += f" {r['minus_reference_points']:+.2f} [{low:+.1f}, {high:+.1f}] |"
            else:
                line += " — |"
        lines.append(line)
    return "\n".join(lines)
