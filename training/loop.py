"""The training loop: AdamW (no weight decay), clipping, warm-up + decay, per-epoch validation, best epoch kept.

From the official BitFit code (BITFIT.md): AdamW, weight decay 0, clipping at 1.0. Changed
by measurement (training/recipe.py, docs/benchmarks/accuracy.md): a linear warm-up and
decay, a separate head rate, more epochs with early stopping. Inputs are tokenized once,
up front; each batch is padded to its longest row.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field

import torch

from bias_store.sites import head_keys
from engine.inputs import EncodedRow, collate, encode
from training.bitfit import Method, count_trainable, prepare
from training.config import TrainConfig  # noqa: F401 (re-exported: callers import it from here)
from training.data import TaskData
from training.epochs import check_finite, fit
from training.evaluate import SELECTION_METRIC
from training.memory import PeakMemory
from training.model import TrainModel, forward_logits
from training.recipe import param_groups, scheduler
from training.scoring import batches_of, evaluate_split, final_scores, loss_of, targets_of

log = logging.getLogger(__name__)

CURVE_POINTS = 50  # training-loss points per epoch in the report (a 1-epoch run still has a curve)

@dataclass
class TrainResult:
    history: list[dict]  # one entry per epoch: train_loss, validation metrics and loss, seconds, rows/s
    steps: list[dict]  # the training-loss curve: ~CURVE_POINTS per epoch {step, epoch, loss, lr}
    best_epoch: int  # 1-based
    selection_metric: str
    validation: dict  # metrics of the best epoch
    test: dict | None  # scored once, at the end, with the best epoch's weights
    train_metrics: dict | None
    trainable_params: int
    total_params: int
    lr: float
    head_lr: float
    seconds: float
    peak_memory_bytes: int | None  # peak during training phases (see memory.py), weights included
    memory_at_start_bytes: int | None  # in use when training began (weights, data, runtime)
    memory_method: str
    training_memory_bytes: int | None  # weights + grads + optimizer state + activations (memory.py)
    stopped_early: bool = False
    details: dict = field(default_factory=dict)  # split -> per-class scores, confusion matrix; multi-label thresholds
    extra: dict = field(default_factory=dict)


BUCKET_BATCHES = 50  # rows are length-sorted within windows of this many batches


def bucketed_batches(rows: list[EncodedRow], size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar-length rows: padding (wasted compute) drops by about half.

    Shuffle, sort by length within windows of BUCKET_BATCHES batches, cut, shuffle the
    batches: every row is still seen once per epoch, in a seed-determined order.
    """
    order = torch.randperm(len(rows), generator=generator).tolist()
    window = size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(rows[i]))
        batches.extend(batches_of(size, chunk))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _tokenize(tm: TrainModel, data: TaskData, max_length: int, token_cache: dict | None) -> dict[str, list[EncodedRow]]:
    rows = {}
    for name, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        if split is None:
            continue
        # A benchmark sweep passes one cache for all its runs: tokenize each split once.
        key = (name, split.source, len(split), max_length)
        if token_cache is not None and key in token_cache:
            rows[name] = token_cache[key]
        else:
            rows[name] = encode(tm.tokenizer, split.texts, max_length)
            if token_cache is not None:
                token_cache[key] = rows[name]
    return rows


@dataclass
class _Run:
    """One task's training state, as the epochs see it."""

    tm: TrainModel
    data: TaskData
    cfg: TrainConfig
    device: torch.device
    rows: dict[str, list[EncodedRow]]
    targets: torch.Tensor  # [train rows]
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    lr: float
    generator: torch.Generator
    memory: PeakMemory
    schedule: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    curve: list[dict] = field(default_factory=list)  # TrainResult.steps


def _train_epoch(run: _Run, epoch: int) -> dict:
    """One pass over the training rows, then the validation score: the epoch's history entry."""
    cfg, model, train_rows = run.cfg, run.tm.model, run.rows["train"]
    model.train()
    batches = bucketed_batches(train_rows, cfg.batch_size, run.generator)
    pad = run.tm.tokenizer.pad_token_id or 0
    epoch_start, seen = time.perf_counter(), 0
    # Summed on the device: reading the loss every step would make a GPU wait for each one.
    loss_sum = torch.zeros((), device=run.device)
    bar = _progress(cfg, len(train_rows), f"epoch {epoch}/{cfg.epochs}")
    report_every = max(1, len(batches) // (50 if bar is not None else 5))  # bar updates / log lines per epoch
    curve_every = max(1, len(batches) // CURVE_POINTS)
    curve_sum, curve_seen = torch.zeros((), device=run.device), 0
    with run.memory:
        for step, chunk in enumerate(batches, start=1):
            batch = collate([train_rows[i] for i in chunk], pad, run.device)
            logits = forward_logits(model, run.tm.spec.model_type, batch, cfg.pooling)
            loss = loss_of(logits, run.targets[chunk].to(run.device), run.data.problem_type)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(run.params, cfg.clip)
            step_lr = run.optimizer.param_groups[0]["lr"]  # the rate this step used
            run.optimizer.step()
            run.schedule.step()
            loss_sum += loss.detach() * len(chunk)
            curve_sum += loss.detach() * len(chunk)
            if cfg.observer is not None:  # a job's progress, ETA and cancel check (training/jobs/worker.py)
                cfg.observer({"phase": cfg.phase, "epoch": epoch, "epochs": cfg.epochs, "step": (epoch - 1) * len(batches) + step,
                              "total_steps": cfg.epochs * len(batches), "lr": step_lr, "base_lr": run.lr})
            seen += len(chunk)
            curve_seen += len(chunk)
            if step % curve_every == 0 or step == len(batches):
                run.curve.append({"step": (epoch - 1) * run.steps_per_epoch + step, "epoch": round(epoch - 1 + step / len(batches), 4),
                                  "loss": curve_sum.item() / curve_seen, "lr": step_lr})
                curve_sum, curve_seen = torch.zeros((), device=run.device), 0
            if step % report_every == 0 or step == len(batches):
                mean_loss, rate = loss_sum.item() / seen, seen / (time.perf_counter() - epoch_start)
                check_finite(mean_loss, epoch, run.lr)
                if bar is not None:
                    bar.update(seen - bar.n)
                    bar.set_postfix(loss=f"{mean_loss:.4f}", rows_s=f"{rate:.0f}")
                elif step != len(batches):
                    log.info("epoch %d: %d/%d rows, loss %.4f, %.0f rows/s", epoch, seen, len(train_rows), mean_loss, rate)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    train_seconds = time.perf_counter() - epoch_start
    if bar is not None:
        bar.close()
    val = evaluate_split(run.tm, run.rows["validation"], run.data.validation, run.data, cfg, run.device, with_loss=True)
    val_loss = val.pop("loss")
    selection = SELECTION_METRIC[run.data.problem_type]
    log.info("epoch %d: loss %.4f, validation %s %.4f, %.1f s", epoch, loss_sum.item() / seen, selection, val[selection], train_seconds)
    entry = {"epoch": epoch, "train_loss": loss_sum.item() / seen, "train_seconds": train_seconds,
             "rows_per_second": seen / train_seconds, "validation_loss": val_loss, "validation": val}
    if cfg.observer is not None:
        cfg.observer({"phase": "evaluation" if cfg.phase == "train" else cfg.phase + "_evaluation",
                      "step": epoch * len(batches), **entry})
    return entry


def train(tm: TrainModel, data: TaskData, method: Method, cfg: TrainConfig, token_cache: dict | None = None) -> TrainResult:
    """Train ``tm.model`` in place; on return it holds the best epoch's weights."""
    cfg.check()
    device = torch.device(cfg.device)
    model = tm.model.to(device)
    trained = prepare(model, tm.spec, method)
    params = [model.get_parameter(n) for n in trained]
    lr = cfg.lr if cfg.lr is not None else method.lr
    head_lr = cfg.head_lr or method.head_lr or lr
    optimizer = torch.optim.AdamW(param_groups(model, trained, head_keys(tm.spec.model_type), lr, head_lr),
                                  lr=lr, weight_decay=cfg.weight_decay)
    max_length = min(cfg.max_length, tm.max_length)
    rows = _tokenize(tm, data, max_length, token_cache)
    # [rows] class ids, [rows] values (regression) or [rows, labels] multi-hot (multi-label)
    targets = targets_of(data.train, data.problem_type)
    selection = SELECTION_METRIC[data.problem_type]
    steps_per_epoch = math.ceil(len(rows["train"]) / cfg.batch_size)
    # Decays over every planned epoch: an early stop ends the run partway down the slope.
    schedule = scheduler(optimizer, steps_per_epoch * cfg.epochs, cfg.schedule, cfg.warmup_fraction)
    run = _Run(tm, data, cfg, device, rows, targets, params, optimizer, lr, torch.Generator().manual_seed(cfg.seed),
               PeakMemory(device), schedule, steps_per_epoch)
    torch.manual_seed(cfg.seed)  # dropout masks
    log.info("training %s: %d trainable of %d parameters, lr %g (head %g, %s), %d train rows", method.name,
             count_trainable(model), sum(p.numel() for p in model.parameters()), lr, head_lr, cfg.schedule, len(data.train))
    started = time.perf_counter()
    deadline = time.monotonic() + cfg.max_seconds if cfg.max_seconds is not None else None
    result = fit(cfg.epochs, cfg.patience, lr, lambda epoch: _train_epoch(run, epoch),
                 lambda entry: [entry["validation"][selection]],
                 lambda part: {n: model.get_parameter(n).detach().clone() for n in trained}, deadline)
    with torch.no_grad():
        for n, value in result.best_states[0].items():
            model.get_parameter(n).copy_(value)
    test, details = final_scores(tm, rows, data, cfg, device)
    train_metrics = evaluate_split(tm, rows["train"], data.train, data, cfg, device) if cfg.eval_train else None
    model.eval()
    best_epoch = result.best_epochs[0]
    return TrainResult(
        history=result.history, steps=run.curve, best_epoch=best_epoch, selection_metric=selection,
        validation=result.history[best_epoch - 1]["validation"], test=test, train_metrics=train_metrics,
        trainable_params=count_trainable(model), total_params=sum(p.numel() for p in model.parameters()),
        lr=lr, head_lr=head_lr, seconds=time.perf_counter() - started, peak_memory_bytes=run.memory.peak_bytes,
        memory_at_start_bytes=run.memory.start_bytes, memory_method=run.memory.method, stopped_early=result.stopped_early, details=details,
        training_memory_bytes=run.memory.training_bytes(sum(p.numel() * p.element_size() for p in model.parameters())),
        extra={"truncated_train_rows": sum(r.truncated for r in rows["train"]), "max_length": max_length},
    )


def _progress(cfg: TrainConfig, total: int, desc: str):
    """A tqdm bar on a terminal; None otherwise (the loop then logs a few lines per epoch)."""
    if not cfg.progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", leave=False)
