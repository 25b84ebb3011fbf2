"""``bitfit train``: train one task's bias set and write, store or upload it.

Only argparse is imported at module level: the ``bitfit`` command imports every
subcommand at start-up, and torch/pandas load only when training actually runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from bias_store.kinds import Pooling
from training.budget import MAX_SECONDS, MAX_STEPS, MIN_STEPS, PATIENCE
from training.store_args import add_store_arguments

log = logging.getLogger(__name__)

METHOD_CHOICES = ("bitfit", "bitfit-ln", "bitfit-qm", "head-only", "full")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--train", required=True, metavar="FILE", help="CSV, TSV, JSONL, Parquet, or a saved datasets folder")
    data.add_argument("--validation", metavar="FILE", help="validation data (default: a seeded 10%% of --train)")
    data.add_argument("--test", metavar="FILE", help="test data, scored once at the end (default: a seeded 10%% of --train "
                      "when --validation is not given either)")
    data.add_argument("--text-column", required=True, metavar="COL", help="column holding the text")
    data.add_argument("--text-pair-column", metavar="COL", help="second text of a pair (e.g. hypothesis)")
    data.add_argument("--label-column", required=True, metavar="COL", help="strings or integers: classes; floats: regression")
    data.add_argument("--problem-type", default="auto", choices=("auto", "classification", "multi-label", "regression"),
                      help="auto: floats that are not whole numbers are regression, anything else classes; multi-label: "
                      "each row names any number of labels (a list, or one string split at , ; or |)")

    train = parser.add_argument_group("training")
    train.add_argument("--task", required=True, metavar="NAME", help="task name: a-z, 0-9, '_' and '-'")
    train.add_argument("--method", default="bitfit-ln", choices=METHOD_CHOICES,
                       help="bitfit-ln: all biases + every LayerNorm gain + head (default); bitfit: the biases + head; "
                       "bitfit-qm: query + intermediate biases + head; "
                       "head-only; full: full fine-tuning baseline (reports metrics, exports nothing)")
    train.add_argument("--epochs", type=int, help="exactly this many passes over the data, validation after each (default: "
                       "the step budget: 8 epochs, but at least --min-steps and at most --max-steps optimizer steps)")
    train.add_argument("--min-steps", type=int, default=MIN_STEPS, help="step budget: no early stop before this many "
                       "optimizer steps")
    train.add_argument("--max-steps", type=int, default=MAX_STEPS, help="step budget: the longest planned run")
    train.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="training's wall-clock budget; the best "
                       "evaluation so far is kept; 0: none")
    train.add_argument("--lr", type=_lr, help="the biases' (or full fine-tuning's) learning rate (default: the method's, "
                       "3e-3 for the bitfit methods), or 'auto': a short run per candidate rate, the best on validation")
    train.add_argument("--head-lr", type=float, help="the head's learning rate (default: 1e-2 for the bitfit methods, else --lr)")
    train.add_argument("--schedule", default="linear", choices=("linear", "constant"),
                       help="linear: 6%% warm-up then linear decay (default); constant: the paper's fixed rate")
    train.add_argument("--batch-size", type=int, default=32, help="rows per optimizer step")
    train.add_argument("--max-length", type=int, default=128, help="tokens per input, truncated beyond")
    train.add_argument("--pooling", choices=Pooling.values(), help="default: mean for the packaged MiniLM, cls otherwise")
    train.add_argument("--seed", type=int, default=42, help="seeds the split, the head's init and the shuffling")
    train.add_argument("--patience", type=int, default=PATIENCE, help="stop after N evaluations without a better validation "
                       "score, once --min-steps are done; 0: off")
    train.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (BitFit uses none)")
    train.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    train.add_argument("--backbone", metavar="PATH", help="backbone folder (default: the packaged all-MiniLM-L6-v2)")
    train.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    train.add_argument("--run-dir", metavar="DIR", help="report folder (default: runs/<task>-<time>)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    out = parser.add_argument_group("output (exactly one, except for --method full)")
    out.add_argument("--out", metavar="FILE", help="write the bias set to this .safetensors file")
    out.add_argument("--store", metavar="URL", help="put it into this bias store: a folder, file://... or s3://bucket/prefix")
    out.add_argument("--push", metavar="URL", help="upload it to a running server (POST URL/tasks)")
    out.add_argument("--api-key", help="an admin key of the server for --push (default: $BITFIT_API_KEY)")
    add_store_arguments(out)


def run(args: argparse.Namespace) -> int:
    from training.errors import preflight_problem

    if problem := preflight_problem(args.backbone):
        print(f"bitfit train: error: {problem}", file=sys.stderr)
        return 2
    from engine.backbone import resolve_device
    from training.errors import TrainingError
    from training.publish import Target, publish
    from training.store_args import store_options
    from training.task import TaskSpec, default_run_dir, run_task

    target = Target(out=args.out, store=args.store, push=args.push, api_key=args.api_key, s3_endpoint_url=args.s3_endpoint_url,
                    store_options=store_options(args))
    try:
        if args.method == "full":
            if args.out or args.store or args.push:
                raise _usage("--method full is a baseline: it produces no bias set, so --out/--store/--push do not apply")
        else:
            target.preflight()
        try:
            device = str(resolve_device(args.device))
        except RuntimeError as exc:  # cuda asked for, none here
            raise _usage(str(exc)) from None
        spec = TaskSpec(
            task=args.task, train=args.train, validation=args.validation, test=args.test,
            text_column=args.text_column, text_pair_column=args.text_pair_column, label_column=args.label_column,
            problem_type=args.problem_type, method=args.method, backbone=args.backbone, pooling=args.pooling,
            epochs=args.epochs, min_steps=args.min_steps, max_steps=args.max_steps, max_seconds=args.max_seconds or None,
            lr=args.lr, head_lr=args.head_lr, schedule=args.schedule, batch_size=args.batch_size,
            max_length=args.max_length, seed=args.seed,
            patience=args.patience, weight_decay=args.weight_decay, clip=args.clip, device=device,
        ).check()
        run_dir = args.run_dir or default_run_dir(args.task)
        outcome = run_task(spec, run_dir, progress=not args.no_progress, before_training=target.check_backbone)
        # A failed push first saves the bias set in the run folder (the message names it).
        published = publish(outcome.bias_set, outcome.model.spec, target, keep_dir=run_dir) if outcome.bias_set is not None else None
    except TrainingError as exc:
        # Bad data, options or destinations are the user's to fix: a message, not a traceback.
        print(f"bitfit train: error: {exc}", file=sys.stderr)
        return 2
    summary = {
        "task": spec.task, "method": spec.method, "best_epoch": outcome.report["best_epoch"],
        "validation": outcome.report["validation"], "test": outcome.report["test"],
        "trainable_params": outcome.report["trainable_params"], "run_dir": str(run_dir), "published": published,
    }
    print(json.dumps(summary))
    return 0


def _lr(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


def _usage(message: str) -> Exception:
    from training.errors import ConfigError

    return ConfigError(message)
