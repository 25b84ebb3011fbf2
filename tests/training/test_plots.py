"""The run folder's figures and report.json: readable for a 1-epoch run, bounded axes, rounded floats."""

from __future__ import annotations

import json

import pytest

from training.plots import plot_learning_curves, pyplot, smoothed
from training.report import PER_LABEL_FILE, rounded, write_run


def _report(epochs: int = 1, multi_label: bool = False) -> dict:
    steps = [{"epoch": (i + 1) / 40, "loss": 0.7 - 0.01 * i + (0.1 if i % 2 else -0.1)} for i in range(40 * epochs)]
    history = [{"epoch": e, "train_loss": 0.5, "validation_loss": 0.45,
                "validation": {"accuracy": 0.8071428571428572 + 0.01 * e, "macro_f1": 0.79, "mcc": -0.2 + 0.3 * e}}
               for e in range(1, epochs + 1)]
    report = {"task": "demo", "config": {"lr": 1e-3, "method": "bitfit"}, "recipe": {}, "history": history, "steps": steps,
              "best_epoch": epochs, "per_class": {}}
    if multi_label:
        rows = [{"label": name, "threshold": 0.35, "precision": 0.9, "recall": 0.6, "f1": 0.72, "support": 12}
                for name in ("money", "sport", "politics")]
        report["per_class"] = {"thresholds": [0.35] * 3, "validation": {"per_class": rows}}
    return report


def test_smoothing_keeps_the_length_and_levels_the_zigzag():
    raw = [1.0, 0.0] * 20
    smooth = smoothed(raw, window=4)
    assert len(smooth) == len(raw) and smooth[0] == 1.0
    assert max(smooth[4:]) - min(smooth[4:]) < 0.01


@pytest.mark.parametrize("epochs", [1, 3])
def test_scores_stay_under_one_and_mcc_has_its_own_axis(tmp_path, epochs):
    plt = pyplot()
    report = _report(epochs)
    captured = {}
    real_close = plt.close
    plt.close = lambda fig: captured.setdefault("fig", fig)  # look at the figure before it is closed
    try:
        plot_learning_curves(plt, report, tmp_path / "curves.png")
    finally:
        plt.close = real_close
    fig = captured["fig"]
    ax_loss, ax_val, ax_mcc = fig.axes
    assert ax_val.get_ylim()[1] == 1.0 and ax_mcc.get_ylim() == (-1.0, 1.0)
    assert [line.get_label() for line in ax_mcc.get_lines()] == ["mcc"]
    raw, smooth = ax_loss.get_lines()[:2]
    assert raw.get_alpha() < smooth.get_alpha() if smooth.get_alpha() else raw.get_alpha() < 1
    if epochs == 1:  # one point per metric: its value is written beside it
        assert {t.get_text() for t in ax_val.texts} >= {"0.817", "0.790"}
    real_close(fig)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_multi_label_runs_get_a_per_label_figure_and_the_report_is_rounded(tmp_path):
    run = write_run(tmp_path / "run", _report(1, multi_label=True))
    assert (run / PER_LABEL_FILE).read_bytes()[:4] == b"\x89PNG"
    text = (run / "report.json").read_text()
    assert "0.8171" in text and "0.8171428" not in text
    assert not (write_run(tmp_path / "single", _report(1)) / PER_LABEL_FILE).exists()
    assert json.loads(text)["history"][0]["validation"]["accuracy"] == 0.8171


def test_rounding_keeps_ints_and_small_numbers():
    assert rounded({"a": [1, 2.0, 1e-5 / 3], "b": "x", "c": 123456.789}) == {"a": [1, 2.0, 3.333e-06], "b": "x", "c": 123500.0}
