"""Queued jobs, one by one vs in one joint run: the wall time a worker takes for K jobs end to end.

Both modes run the same K jobs (disjoint slices of Rotten Tomatoes, method ``bitfit``, one
fixed rate) through the real queue on a fresh folder store: claim, download, train,
evaluate, publish, finish. ``joint=1`` trains them one after another (a model load, a
tokenization and a training run each); ``joint=K`` trains them in one joint run. Rounds
alternate the two modes so that load from other processes hits both alike:

    OMP_NUM_THREADS=2 .venv/bin/python bench/jobs_joint.py --jobs 4 --rows 128 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_mode(frames: list, joint: int, args) -> float:
    from bias_store.backends.folder import FilesystemStore
    from training.jobs.config import JobConfig
    from training.jobs.queue import JobQueue
    from training.jobs.worker import JobWorker

    with tempfile.TemporaryDirectory() as tmp:
        store = FilesystemStore(Path(tmp) / "store")
        queue = JobQueue.for_store(store)
        ids = []
        for k, (train, validation) in enumerate(frames):
            files = {"train": queue.put_file(train.to_csv(index=False).encode(), "train.csv", len(train), list(train.columns)).id,
                     "validation": queue.put_file(validation.to_csv(index=False).encode(), "validation.csv",
                                                  len(validation), list(validation.columns)).id}
            config = JobConfig.parse({"task": f"rt{k}", "method": "bitfit", "publish": "always",
                                      "hyperparameters": {"learning_rate": 0.003, "epochs": args.epochs,
                                                          "batch_size": args.batch_size, "max_length": args.max_length}})
            ids.append(queue.submit(config, files).id)
        worker = JobWorker(queue, store, lease_s=60, joint=joint, device=args.device)
        started = time.perf_counter()
        while worker.run_once() is not None:
            pass
        seconds = time.perf_counter() - started
        records = [queue.get(j) for j in ids]
        assert all(r.status == "succeeded" and r.result["published"] for r in records), [r.error for r in records]
        print(json.dumps({"mode": "joint" if joint > 1 else "one_by_one", "jobs": len(ids), "seconds": round(seconds, 2),
                          "validation_accuracy": [round(r.result["validation"]["accuracy"], 3) for r in records]}),
              flush=True)
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=128, help="training rows per job")
    parser.add_argument("--validation-rows", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import pandas as pd

    # The file is sorted by label: shuffle (seeded) so that every slice holds both classes.
    rt = pd.read_csv(ROOT / "examples" / "data" / "rt_train.csv")[["text", "label"]].sample(frac=1.0, random_state=0)
    per = args.rows + args.validation_rows
    frames = [(rt.iloc[k * per: k * per + args.rows], rt.iloc[k * per + args.rows: (k + 1) * per]) for k in range(args.jobs)]
    run_mode(frames[:1], 1, args)  # warm-up: imports and the first model load are paid once, outside the timing
    times: dict[str, list[float]] = {"one_by_one": [], "joint": []}
    for _ in range(args.rounds):
        times["one_by_one"].append(run_mode(frames, 1, args))
        times["joint"].append(run_mode(frames, args.jobs, args))
    best = {mode: min(values) for mode, values in times.items()}
    print(json.dumps({"summary": "jobs_joint", "jobs": args.jobs, "rows": args.rows, "epochs": args.epochs,
                      "one_by_one_s": best["one_by_one"], "joint_s": best["joint"],
                      "speedup": round(best["one_by_one"] / best["joint"], 2), "rounds": times}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
