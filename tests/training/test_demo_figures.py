"""The demo figures README.md and docs/TRAINING.md quote match examples/sentiment/run/report.json."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_quoted_demo_figures_are_the_reports():
    report = json.loads((ROOT / "examples" / "sentiment" / "run" / "report.json").read_text())
    size = (ROOT / "examples" / "sentiment" / "sentiment.safetensors").stat().st_size
    training = (ROOT / "docs" / "TRAINING.md").read_text()
    demo = training[training.index("examples/sentiment/run/report.json"):]
    test = report["test"]
    assert f"**test accuracy {test['accuracy']:.3f}**" in demo
    assert f"macro-F1 {test['macro_f1']:.3f}, MCC {test['mcc']:.3f}" in demo
    assert f"{report['trainable_params']:,} trainable parameters" in demo
    assert f"{size:,} bytes ({size / 1024:.0f} KiB)" in demo
    assert f"method `{report['config']['method']}`" in training
    assert "--epochs 2 --seed 13" not in training  # the demo ran with the default epochs
    readme = (ROOT / "README.md").read_text()
    assert f"about {size / 1024:.0f} KiB for the default" in readme
