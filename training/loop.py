"""The training loop: AdamW (no weight decay), clipping, per-epoch validation, best epoch kept.

Defaults follow the official BitFit code (BITFIT.md): AdamW, weight decay 0, lr 1e-3 for
the bias methods and 2e-5 for full fine-tuning, clipping at 1.0, maximum length 128, no
schedule. Inputs are tokenized once, up front; each batch is padded to its longest row.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bias_store.kinds import Pooling, ProblemType
from engine.inputs import EncodedRow, collate, encode
from training.bitfit import Method, count_trainable, prepare
from training.data import Split, TaskData
from training.epochs import check_finite, fit
from training.errors import ConfigError
from training.evaluate import SELECTION_METRIC, metrics
from training.memory import PeakMemory
from training.model import TrainModel, forward_logits

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 5
    lr: float | None = None  # None: the method's default (1e-3 bias methods, 2e-5 full)
    batch_size: int = 32  # the paper used 8; 32 is 3-4x faster per epoch at the same accuracy here
    max_length: int = 128
    pooling: Pooling = Pooling.CLS
    seed: int = 42
    weight_decay: float = 0.0  # the official code uses none
    clip: float = 1.0  # max gradient norm
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    eval_batch_size: int = 128
    device: str = "cpu"
    progress: bool = True  # tqdm bar (auto-hidden when stderr is not a terminal)
    eval_train: bool = False  # score the training split at the end (for the generalization gap)

    def check(self) -> None:
        for name in ("epochs", "batch_size", "max_length", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.patience < 0 or self.clip <= 0 or self.weight_decay < 0:
            raise ConfigError("patience must be >= 0, clip > 0 and weight decay >= 0")


@dataclass
class TrainResult:
    history: list[dict]  # one entry per epoch: train_loss, validation metrics, seconds, rows/s
    best_epoch: int  # 1-based
    selection_metric: str
    validation: dict  # metrics of the best epoch
    test: dict | None  # scored once, at the end, with the best epoch's weights
    train_metrics: dict | None
    trainable_params: int
    total_params: int
    lr: float
    seconds: float
    peak_memory_bytes: int | None  # peak during training phases (see memory.py), weights included
    memory_at_start_bytes: int | None  # in use when training began (weights, data, runtime)
    memory_method: str
    training_memory_bytes: int | None  # weights + grads + optimizer state + activations (memory.py)
    stopped_early: bool = False
    extra: dict = field(default_factory=dict)


def _batches(size: int, order: list[int]) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


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
        batches.extend(_batches(size, chunk))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _loss(logits: torch.Tensor, targets: torch.Tensor, problem_type: str) -> torch.Tensor:
    if problem_type == ProblemType.REGRESSION:
        return F.mse_loss(logits[:, 0], targets.float())
    if problem_type == ProblemType.MULTI_LABEL:  # a sigmoid per label, as the engine serves it
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


@torch.inference_mode()
def batched_logits(
    rows: list[EncodedRow], num_labels: int, pad: int, device: torch.device, batch_size: int,
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
) -> torch.Tensor:
    """``forward`` over ``rows`` in batches: fp32 logits [rows, num_labels], in the order of ``rows``.

    The one logits prediction of training (one task here, a joint task in joint.py).
    """
    # Length-sorted batches pad less; results go back to the input order.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = torch.empty(len(rows), num_labels)
    for chunk in _batches(batch_size, order):
        out[torch.tensor(chunk)] = forward(collate([rows[i] for i in chunk], pad, device)).float().cpu()
    return out


def predict_logits(tm: TrainModel, rows: list[EncodedRow], pooling: Pooling, device: torch.device, batch_size: int) -> torch.Tensor:
    """Logits [rows, num_labels] in eval mode, in the order of ``rows``."""
    tm.model.eval()
    return batched_logits(rows, tm.model.config.num_labels, tm.tokenizer.pad_token_id or 0, device, batch_size,
                          lambda batch: forward_logits(tm.model, tm.spec.model_type, batch, pooling))


def evaluate_split(tm: TrainModel, rows: list[EncodedRow], split: Split, data: TaskData, cfg: TrainConfig, device: torch.device) -> dict:
    logits = predict_logits(tm, rows, cfg.pooling, device, cfg.eval_batch_size)
    return metrics(data.problem_type, logits, split.targets, len(data.labels) if data.problem_type != ProblemType.REGRESSION else 1)


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
    with run.memory:
        for step, chunk in enumerate(batches, start=1):
            batch = collate([train_rows[i] for i in chunk], pad, run.device)
            logits = forward_logits(model, run.tm.spec.model_type, batch, cfg.pooling)
            loss = _loss(logits, run.targets[chunk].to(run.device), run.data.problem_type)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(run.params, cfg.clip)
            run.optimizer.step()
            loss_sum += loss.detach() * len(chunk)
            seen += len(chunk)
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
    val = evaluate_split(run.tm, run.rows["validation"], run.data.validation, run.data, cfg, run.device)
    selection = SELECTION_METRIC[run.data.problem_type]
    log.info("epoch %d: loss %.4f, validation %s %.4f, %.1f s", epoch, loss_sum.item() / seen, selection, val[selection], train_seconds)
    return {"epoch": epoch, "train_loss": loss_sum.item() / seen, "train_seconds": train_seconds,
            "rows_per_second": seen / train_seconds, "validation": val}


def train(tm: TrainModel, data: TaskData, method: Method, cfg: TrainConfig, token_cache: dict | None = None) -> TrainResult:
    """Train ``tm.model`` in place; on return it holds the best epoch's weights."""
    cfg.check()
    device = torch.device(cfg.device)
    model = tm.model.to(device)
    trained = prepare(model, tm.spec, method)
    params = [model.get_parameter(n) for n in trained]
    lr = cfg.lr if cfg.lr is not None else method.lr
    max_length = min(cfg.max_length, tm.max_length)
    rows = _tokenize(tm, data, max_length, token_cache)
    # [rows] class ids, [rows] values (regression) or [rows, labels] multi-hot (multi-label)
    targets = torch.tensor(data.train.targets, dtype=torch.long if data.problem_type == ProblemType.SINGLE_LABEL else torch.float32)
    selection = SELECTION_METRIC[data.problem_type]
    run = _Run(tm, data, cfg, device, rows, targets, params, torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay),
               lr, torch.Generator().manual_seed(cfg.seed), PeakMemory(device))
    torch.manual_seed(cfg.seed)  # dropout masks
    log.info("training %s: %d trainable of %d parameters, lr %g, %d train rows", method.name,
             count_trainable(model), sum(p.numel() for p in model.parameters()), lr, len(data.train))
    started = time.perf_counter()
    result = fit(cfg.epochs, cfg.patience, lr, lambda epoch: _train_epoch(run, epoch),
                 lambda entry: [entry["validation"][selection]],
                 lambda part: {n: model.get_parameter(n).detach().clone() for n in trained})
    with torch.no_grad():
        for n, value in result.best_states[0].items():
            model.get_parameter(n).copy_(value)
    test = evaluate_split(tm, rows["test"], data.test, data, cfg, device) if data.test is not None else None
    train_metrics = evaluate_split(tm, rows["train"], data.train, data, cfg, device) if cfg.eval_train else None
    model.eval()
    best_epoch = result.best_epochs[0]
    return TrainResult(
        history=result.history, best_epoch=best_epoch, selection_metric=selection,
        validation=result.history[best_epoch - 1]["validation"], test=test, train_metrics=train_metrics,
        trainable_params=count_trainable(model), total_params=sum(p.numel() for p in model.parameters()),
        lr=lr, seconds=time.perf_counter() - started, peak_memory_bytes=run.memory.peak_bytes,
        memory_at_start_bytes=run.memory.start_bytes, memory_method=run.memory.method, stopped_early=result.stopped_early,
        training_memory_bytes=run.memory.training_bytes(sum(p.numel() * p.element_size() for p in model.parameters())),
        extra={"truncated_train_rows": sum(r.truncated for r in rows["train"]), "max_length": max_length},
    )


def _progress(cfg: TrainConfig, total: int, desc: str):
    """A tqdm bar on a terminal; None otherwise (the loop then logs a few lines per epoch)."""
    if not cfg.progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", leave=False)
