"""A run's report, built from the training result, and its folder: ``report.json`` and a PNG plot."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from bias_store.kinds import Pooling
from training.bitfit import Method
from training.data import TaskData
from training.loop import TrainResult

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
PLOT_FILE = "learning_curves.png"


def run_config(spec_fields: dict, pooling: Pooling, result: TrainResult, backbone: str) -> dict:
    """The run's settings as used: the spec's fields with what was resolved while training."""
    return {**spec_fields, "pooling": pooling, "lr": result.lr, "max_length": result.extra["max_length"], "backbone": backbone}


def training_summary(method: Method, config: dict, data: TaskData, result: TrainResult) -> dict:
    """What a bias set's ``training`` metadata records of its run."""
    return {
        "method": method.name, "epochs_run": len(result.history), "best_epoch": result.best_epoch, "lr": result.lr,
        "batch_size": config["batch_size"], "max_length": config["max_length"], "seed": config["seed"],
        "train_rows": len(data.train), "selection_metric": result.selection_metric,
        "validation": result.validation, "test": result.test, "trainable_params": result.trainable_params,
        "seconds": round(result.seconds, 1),
    }


def build_report(task: str, config: dict, data: TaskData, result: TrainResult, fingerprint: str) -> dict:
    """``report.json``: the config, the data's shape and split, and everything the training result holds."""
    return {
        "task": task,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "labels": data.labels,
        "problem_type": data.problem_type,
        "inputs": data.inputs,
        "split": data.split,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "selection_metric": result.selection_metric,
        "validation": result.validation,
        "test": result.test,
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
    """Write the report and its learning-curve plot into ``run_dir``; returns the folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    plot_learning_curves(report, run_dir / PLOT_FILE)
    return run_dir


def plot_learning_curves(report: dict, path: Path) -> None:
    """Training loss and every validation metric per epoch; the kept epoch is marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    history = report["history"]
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    for name in history[0]["validation"]:
        if name == "mse":
            continue  # a different scale from the correlation and accuracy metrics
        ax_val.plot(epochs, [h["validation"][name] for h in history], marker="o", label=name)
    best = report["best_epoch"]
    for ax in (ax_loss, ax_val):
        ax.axvline(best, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(epochs)
    ax_val.set(title=f"validation (kept epoch {best})", xlabel="epoch")
    ax_val.legend()
    fig.suptitle(f"{report['task']}: {report['config']['method']}, lr {report['config']['lr']:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
