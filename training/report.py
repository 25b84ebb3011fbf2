"""The run folder: ``report.json`` (config, per-epoch metrics, best epoch, timing, sizes) and a PNG plot."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
PLOT_FILE = "learning_curves.png"


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
