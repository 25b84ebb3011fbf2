"""The run folder's plots: learning curves (per step and per epoch) and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

# Metrics on another scale than accuracy-like scores, or with their own panel, stay out of the metric panel.
NOT_IN_METRIC_PANEL = ("mse", "loss")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _title(report: dict) -> str:
    recipe = report.get("recipe") or {}
    lr = f"lr {report['config']['lr']:g}"
    if recipe.get("head_lr") is not None:
        lr += f", head {recipe['head_lr']:g}"
    if recipe.get("lr_search"):
        lr += " (chosen on validation)"
    return f"{report['task']}: {report['config']['method']}, {lr}, {recipe.get('schedule', 'constant')} schedule"


def plot_learning_curves(plt, report: dict, path: Path) -> None:
    """Training loss per step and validation loss per epoch; validation metrics per epoch; the kept epoch marked."""
    history, steps, best = report["history"], report.get("steps") or [], report["best_epoch"]
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:  # x in epochs, so a 1-epoch run is a curve, not a point
        ax_loss.plot([s["epoch"] for s in steps], [s["loss"] for s in steps], linewidth=1, label="training loss (per step)")
    else:
        ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="training loss (per epoch)")
    if "validation_loss" in history[0]:
        ax_loss.plot(epochs, [h["validation_loss"] for h in history], marker="o", label="validation loss (end of epoch)")
    ax_loss.set(title="loss", xlabel="epoch", ylabel="loss")
    for name in history[0]["validation"]:
        if name not in NOT_IN_METRIC_PANEL:
            ax_val.plot(epochs, [h["validation"][name] for h in history], marker="o", label=name)
    for ax in (ax_loss, ax_val):
        ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"kept: epoch {best}")
        ax.set_xticks(range(0, max(epochs) + 1))
        ax.legend(fontsize=8)
    ax_val.set(title=f"validation (kept epoch {best})", xlabel="epoch")
    fig.suptitle(_title(report))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(plt, matrix: dict, title: str, path: Path) -> None:
    """Counts with true classes as rows, each cell also as a share of its row."""
    counts, labels = matrix["counts"], matrix["labels"]
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(counts, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    peak = max((c for row in counts for c in row), default=0)
    if len(labels) <= 20:  # numbers stop being readable beyond that
        for i, row in enumerate(counts):
            total = sum(row) or 1
            for j, c in enumerate(row):
                ax.text(j, i, f"{c}\n{c / total:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if c > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
