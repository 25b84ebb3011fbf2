"""A run's report, built from the training result, and its folder: ``report.json`` and a PNG plot."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from bias_store.kinds import Pooling
from training.bitfit import Method
from training.data import TaskData
from training.loop import TrainConfig, TrainResult
from training.lr_search import LrChoice
from training.plots import plot_confusion, plot_learning_curves, plot_per_label, pyplot

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
PLOT_FILE = "learning_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
PER_LABEL_FILE = "per_label.png"  # multi-label runs


def run_config(spec_fields: dict, pooling: Pooling, result: TrainResult, backbone: str) -> dict:
    """The run's settings as used: the spec's fields with what was resolved while training."""
    return {**spec_fields, "pooling": pooling, "lr": result.lr, "max_length": result.extra["max_length"], "backbone": backbone}


def recipe_of(cfg: TrainConfig, result: TrainResult, lr_choice: LrChoice | None) -> dict:
    """How the run trained: rates (and the search that chose them), schedule, its step budget, patience."""
    return {"lr": result.lr, "head_lr": result.head_lr, "lr_search": lr_choice.as_dict() if lr_choice else None,
            "schedule": cfg.schedule, "warmup_fraction": cfg.warmup_fraction if cfg.schedule == "linear" else 0.0,
            "epochs": cfg.epochs, "budget": result.extra.get("budget"), "patience": cfg.patience,
            "max_seconds": cfg.max_seconds, "steps_run": result.extra.get("steps_run"),
            "best_step": result.extra.get("best_step"), "hit_time_limit": result.extra.get("hit_time_limit")}


def training_summary(method: Method, config: dict, data: TaskData, result: TrainResult, recipe: dict) -> dict:
    """What a bias set's ``training`` metadata records of its run."""
    return {
        "method": method.name, "epochs_run": result.history[-1]["epoch"], "evaluations": len(result.history),
        "best_epoch": result.best_epoch, "best_step": result.extra.get("best_step"), "lr": result.lr,
        "head_lr": result.head_lr, "lr_search": recipe["lr_search"], "schedule": recipe["schedule"],
        "stopped_early": result.stopped_early,
        "batch_size": config["batch_size"], "max_length": config["max_length"], "seed": config["seed"],
        "train_rows": len(data.train), "selection_metric": result.selection_metric,
        "validation": result.validation, "test": result.test, "trainable_params": result.trainable_params,
        "seconds": round(result.seconds, 1),
    }


def build_report(task: str, config: dict, data: TaskData, result: TrainResult, fingerprint: str, recipe: dict) -> dict:
    """``report.json``: the config, the data's shape and split, and everything the training result holds."""
    return {
        "task": task,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "labels": data.labels,
        "problem_type": data.problem_type,
        "inputs": data.inputs,
        "split": data.split,
        "recipe": recipe,
        "history": result.history,
        "steps": result.steps,
        "best_epoch": result.best_epoch,
        "selection_metric": result.selection_metric,
        "validation": result.validation,
        "test": result.test,
        "per_class": result.details,
        "train_metrics": result.train_metrics,
        "stopped_early": result.stopped_early,
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "seconds": result.seconds,
        "peak_memory_bytes": result.peak_memory_bytes,
        "training_memory_bytes": result.training_memory_bytes,
        "memory_method": result.memory_method,
        "truncated_train_rows": result.extra["truncated_train_rows"],
        "backbone_fingerprint": fingerprint,
    }


def write_run(run_dir: str | Path, report: dict) -> Path:
    """Write the report and its plots into ``run_dir``; returns the folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / REPORT_FILE).write_text(json.dumps(rounded(report), indent=2, sort_keys=False) + "\n")
    plt = pyplot()
    plot_learning_curves(plt, report, run_dir / PLOT_FILE)
    matrix = _confusion_source(report)
    if matrix is not None:
        plot_confusion(plt, matrix, f"{report['task']}: {matrix['split']} confusion matrix", run_dir / CONFUSION_FILE)
    labels = _per_label_source(report)
    if labels is not None:
        split, rows = labels
        plot_per_label(plt, rows, f"{report['task']}: {split} scores per label", run_dir / PER_LABEL_FILE)
    return run_dir


def rounded(value: object, digits: int = 4) -> object:
    """``value`` with every float cut to ``digits`` significant digits (0.8071428571428572 -> 0.8071)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def _per_label_source(report: dict) -> tuple[str, list[dict]] | None:
    """The test split's per-label scores, else validation's (multi-label runs only)."""
    for split in ("test", "validation"):
        details = (report.get("per_class") or {}).get(split)
        if details and details.get("per_class") and "threshold" in details["per_class"][0]:
            return split, details["per_class"]
    return None


def _confusion_source(report: dict) -> dict | None:
    """The test split's confusion matrix, else validation's (single-label classification only)."""
    for split in ("test", "validation"):
        details = (report.get("per_class") or {}).get(split)
        if details and "confusion_matrix" in details:
            return {**details["confusion_matrix"], "split": split}
    return None
