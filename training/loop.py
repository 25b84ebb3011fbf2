"""The training loop: AdamW (no weight decay), clipping, warm-up + decay, validation every few
hundred steps, the best evaluation kept.

From the official BitFit code (BITFIT.md): AdamW, weight decay 0, clipping at 1.0. Changed
by measurement (training/recipe.py, training/budget.py, docs/benchmarks/accuracy.md): a
linear warm-up and decay, a separate head rate, a step budget with early stopping. Inputs
are tokenized once, up front; each batch is padded to its longest row.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import torch

from bias_store.sites import head_keys
from engine.inputs import EncodedRow, collate, encode
from training.bitfit import Method, count_trainable, prepare
from training.budget import Budget, plan
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
    history: list[dict]  # one entry per evaluation: step, epoch, train_loss, validation metrics and loss, seconds, rows/s
    steps: list[dict]  # the training-loss curve: ~CURVE_POINTS per epoch {step, epoch, loss, lr}
    best_epoch: float  # the epoch (fractional on the step budget) of the kept evaluation
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
    """One task's training state, as the rounds see it."""

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
    budget: Budget
    deadline: float | None  # time.monotonic() past which no step starts
    step: int = 0  # optimizer steps taken
    batches: list[list[int]] = field(default_factory=list)  # this epoch's batches, from ``cursor`` on
    cursor: int = 0
    curve: list[dict] = field(default_factory=list)  # TrainResult.steps

    def next_batch(self) -> list[int]:
        """The next batch of row ids; a new epoch (reshuffled) once the last one is used up."""
        if self.cursor >= len(self.batches):
            self.batches, self.cursor = bucketed_batches(self.rows["train"], self.cfg.batch_size, self.generator), 0
        self.cursor += 1
        return self.batches[self.cursor - 1]

    @property
    def epoch(self) -> float:
        """Passes over the training rows so far (whole after each epoch)."""
        value = round(self.step / self.budget.steps_per_epoch, 4)
        return int(value) if value == int(value) else value


def _train_step(run: _Run, chunk: list[int], pad: int) -> tuple[torch.Tensor, float]:
    """One optimizer step on ``chunk``: its (detached) loss and the rate it used."""
    batch = collate([run.rows["train"][i] for i in chunk], pad, run.device)
    logits = forward_logits(run.tm.model, run.tm.spec.model_type, batch, run.cfg.pooling)
    loss = loss_of(logits, run.targets[chunk].to(run.device), run.data.problem_type)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.params, run.cfg.clip)
    step_lr = run.optimizer.param_groups[0]["lr"]  # the rate this step used
    run.optimizer.step()
    run.schedule.step()
    run.step += 1
    return loss.detach(), step_lr


def _train_round(run: _Run, index: int) -> dict:
    """``eval_every`` optimizer steps (fewer at the planned end or the deadline), then the
    validation score: the round's history entry."""
    cfg, budget = run.cfg, run.budget
    run.tm.model.train()
    pad = run.tm.tokenizer.pad_token_id or 0
    steps = min(budget.eval_every, budget.total_steps - run.step)
    started, seen = time.perf_counter(), 0
    # Summed on the device: reading the loss every step would make a GPU wait for each one.
    loss_sum = torch.zeros((), device=run.device)
    bar = _progress(cfg, steps, f"round {index}/{budget.evaluations}")
    report_every = max(1, steps // (50 if bar is not None else 5))  # bar updates / log lines per round
    curve_every = max(1, budget.steps_per_epoch // CURVE_POINTS)
    curve_sum, curve_seen = torch.zeros((), device=run.device), 0
    with run.memory:
        for k in range(1, steps + 1):
            chunk = run.next_batch()
            loss, step_lr = _train_step(run, chunk, pad)
            loss_sum += loss * len(chunk)
            curve_sum += loss * len(chunk)
            if cfg.observer is not None:  # a job's progress, ETA and cancel check (training/jobs/worker.py)
                cfg.observer({"phase": cfg.phase, "epoch": run.epoch, "epochs": budget.planned_epochs, "step": run.step,
                              "total_steps": budget.total_steps, "lr": step_lr, "base_lr": run.lr})
            seen += len(chunk)
            curve_seen += len(chunk)
            late = run.deadline is not None and time.monotonic() >= run.deadline
            last = k == steps or late
            if run.step % curve_every == 0 or last:
                run.curve.append({"step": run.step, "epoch": run.epoch, "loss": curve_sum.item() / curve_seen, "lr": step_lr})
                curve_sum, curve_seen = torch.zeros((), device=run.device), 0
            if k % report_every == 0 or last:
                mean_loss, rate = loss_sum.item() / seen, seen / (time.perf_counter() - started)
                check_finite(mean_loss, index, run.lr)
                if bar is not None:
                    bar.update(k - bar.n)
                    bar.set_postfix(loss=f"{mean_loss:.4f}", rows_s=f"{rate:.0f}")
                elif not last:
                    log.info("round %d: step %d/%d, loss %.4f, %.0f rows/s", index, run.step, budget.total_steps, mean_loss, rate)
            if late:
                break
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    train_seconds = time.perf_counter() - started
    if bar is not None:
        bar.close()
    val = evaluate_split(run.tm, run.rows["validation"], run.data.validation, run.data, cfg, run.device, with_loss=True)
    val_loss = val.pop("loss")
    selection = SELECTION_METRIC[run.data.problem_type]
    log.info("step %d (epoch %s): loss %.4f, validation %s %.4f, %.1f s", run.step, run.epoch, loss_sum.item() / seen,
             selection, val[selection], train_seconds)
    entry = {"evaluation": index, "step": run.step, "epoch": run.epoch, "train_loss": loss_sum.item() / seen,
             "train_seconds": train_seconds, "rows_per_second": seen / train_seconds, "validation_loss": val_loss,
             "validation": val}
    if cfg.observer is not None:
        cfg.observer({"phase": "evaluation" if cfg.phase == "train" else cfg.phase + "_evaluation", **entry})
    return entry


def train(tm: TrainModel, data: TaskData, method: Method, cfg: TrainConfig, token_cache: dict | None = None) -> TrainResult:
    """Train ``tm.model`` in place; on return it holds the best evaluation's weights."""
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
    budget = plan(len(rows["train"]), cfg.batch_size, cfg.epochs, cfg.min_steps, cfg.max_steps, cfg.evaluations)
    # Decays over the planned run: an early stop ends it partway down the slope.
    schedule = scheduler(optimizer, budget.total_steps, cfg.schedule, cfg.warmup_fraction)
    started = time.perf_counter()
    deadline = time.monotonic() + cfg.max_seconds if cfg.max_seconds is not None else None
    run = _Run(tm, data, cfg, device, rows, targets, params, optimizer, lr, torch.Generator().manual_seed(cfg.seed),
               PeakMemory(device), schedule, budget, deadline)
    torch.manual_seed(cfg.seed)  # dropout masks
    log.info("training %s: %d trainable of %d parameters, lr %g (head %g, %s), %d train rows, %d steps planned "
             "(validation every %d)", method.name, count_trainable(model), sum(p.numel() for p in model.parameters()),
             lr, head_lr, cfg.schedule, len(data.train), budget.total_steps, budget.eval_every)
    result = fit(budget.evaluations, cfg.patience, lr, lambda index: _train_round(run, index),
                 lambda entry: [entry["validation"][selection]],
                 lambda part: {n: model.get_parameter(n).detach().clone() for n in trained}, deadline,
                 budget.min_evaluations)
    with torch.no_grad():
        for n, value in result.best_states[0].items():
            model.get_parameter(n).copy_(value)
    test, details = final_scores(tm, rows, data, cfg, device)
    train_metrics = evaluate_split(tm, rows["train"], data.train, data, cfg, device) if cfg.eval_train else None
    model.eval()
    best = result.history[result.best_epochs[0] - 1]
    return TrainResult(
        history=result.history, steps=run.curve, best_epoch=best["epoch"], selection_metric=selection,
        validation=best["validation"], test=test, train_metrics=train_metrics,
        trainable_params=count_trainable(model), total_params=sum(p.numel() for p in model.parameters()),
        lr=lr, head_lr=head_lr, seconds=time.perf_counter() - started, peak_memory_bytes=run.memory.peak_bytes,
        memory_at_start_bytes=run.memory.start_bytes, memory_method=run.memory.method, stopped_early=result.stopped_early, details=details,
        training_memory_bytes=run.memory.training_bytes(sum(p.numel() * p.element_size() for p in model.parameters())),
        extra={"truncated_train_rows": sum(r.truncated for r in rows["train"]), "max_length": max_length,
               "budget": budget.as_dict(), "best_step": best["step"], "steps_run": run.step,
               "hit_time_limit": deadline is not None and time.monotonic() >= deadline},
    )


def _progress(cfg: TrainConfig, total: int, desc: str):
    """A tqdm bar on a terminal; None otherwise (the loop then logs a few lines per epoch)."""
    if not cfg.progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", leave=False)
