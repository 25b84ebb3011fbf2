"""Which pooling suits the packaged MiniLM: CLS+pooler vs mean, BitFit on a Rotten Tomatoes subset.

Prints one JSON line per (pooling, seed) with validation accuracy (never test), then a summary:

    .venv/bin/python bench/pooling.py --train-rows 2000 --epochs 2 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description="CLS vs mean pooling on the packaged MiniLM (validation accuracy)")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--method", default="bitfit")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import pandas as pd
    import torch

    from bias_store.kinds import Pooling
    from training.task import TaskSpec, run_task

    torch.set_num_threads(min(torch.get_num_threads(), 8))
    data = ROOT / "examples" / "data"
    results: dict[str, list[float]] = {p.value: [] for p in Pooling}
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.csv"
        pd.read_csv(data / "rt_train.csv").sample(n=args.train_rows, random_state=0).to_csv(train, index=False)
        for seed in args.seeds:
            for pooling in results:
                spec = TaskSpec(task="pooling", train=str(train), validation=str(data / "rt_validation.csv"),
                                text_column="text", label_column="label", method=args.method, pooling=pooling,
                                epochs=args.epochs, seed=seed, device=args.device)
                report = run_task(spec, progress=False).report
                acc = report["validation"]["accuracy"]
                results[pooling].append(acc)
                print(json.dumps({"pooling": pooling, "seed": seed, "validation_accuracy": acc,
                                  "train_rows": args.train_rows, "epochs": args.epochs,
                                  "seconds": round(report["seconds"], 1)}), flush=True)
    print(json.dumps({"summary": {p: {"mean": statistics.mean(v), "n": len(v)} for p, v in results.items()}}))


if __name__ == "__main__":
    main()
