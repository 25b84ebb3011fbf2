"""Throughput: K BitFit tasks trained one by one vs together in one loop with mixed-task batches.

Both modes see the same rows, batch size and epochs; only training phases are timed
(validation excluded). Tasks are disjoint slices of the Rotten Tomatoes training split.
Prints one JSON line per mode and a summary line:

    OMP_NUM_THREADS=1 .venv/bin/python bench/joint_training.py --tasks 4 --rows 64 --epochs 1 --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--rows", type=int, default=64, help="training rows per task")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", help="default: the packaged MiniLM")
    parser.add_argument("--data-dir", help="folder with rt_train.csv (default: examples/data)")
    args = parser.parse_args()

    import pandas as pd

    from bias_store.kinds import ProblemType
    from engine.backbone import resolve_device
    from training.bitfit import METHODS
    from training.data import load_task_data
    from training.joint import JointTask, train_joint
    from training.loop import TrainConfig, train
    from training.model import default_pooling, load_model

    device = str(resolve_device(args.device))
    pooling = default_pooling(args.backbone)
    source = Path(args.data_dir or ROOT / "examples" / "data") / "rt_train.csv"
    frame = pd.read_csv(source).sample(frac=1.0, random_state=0).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        tasks = []
        for k in range(args.tasks):
            part = frame.iloc[k * args.rows * 2 : (k + 1) * args.rows * 2]  # train + an equal validation slice
            part.iloc[: args.rows].to_csv(Path(tmp) / f"t{k}_train.csv", index=False)
            part.iloc[args.rows :].to_csv(Path(tmp) / f"t{k}_val.csv", index=False)
            data = load_task_data(Path(tmp) / f"t{k}_train.csv", "text", "label", validation=Path(tmp) / f"t{k}_val.csv")
            tasks.append(JointTask(f"task-{k}", data))

        one_by_one = 0.0
        for task in tasks:
            tm = load_model(args.backbone, len(task.data.labels), task.data.problem_type, seed=0)
            cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, pooling=pooling, device=device, progress=False)
            result = train(tm, task.data, METHODS["bitfit"], cfg)
            one_by_one += sum(h["train_seconds"] for h in result.history)
        rows = args.tasks * args.rows * args.epochs
        record = {"mode": "one_by_one", "tasks": args.tasks, "train_seconds": one_by_one, "rows_per_second": rows / one_by_one}
        print(json.dumps(record), flush=True)

        tm = load_model(args.backbone, 2, ProblemType.SINGLE_LABEL, seed=0)
        result = train_joint(tm, tasks, epochs=args.epochs, batch_size=args.batch_size, pooling=pooling, device=device)
        together = sum(h["train_seconds"] for h in result["history"])
        print(json.dumps({"mode": "joint", "tasks": args.tasks, "train_seconds": together, "rows_per_second": rows / together}), flush=True)
    print(json.dumps({"summary": {"throughput_ratio_joint_over_one_by_one": one_by_one / together, "device": device,
                                  "tasks": args.tasks, "rows_per_task": args.rows, "epochs": args.epochs, "batch_size": args.batch_size}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
