"""Several BitFit tasks trained in one loop: mixed-task batches share the frozen backbone.

The engine's trick, run backwards: every task's bias offsets are one row of a trainable
``[tasks, width]`` table; each batch gathers its rows' offsets and the engine's own
``per_row_biases`` adds them at every bias site, so rows of different tasks share each
matmul of the forward and the backward pass. Each task keeps its own head. What comes out per task is the same
kind of bias set ``bitfit train`` exports (all sites + head, absolute values).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bias_store.format import BiasSet
from bias_store.kinds import Pooling, ProblemType
from bias_store.sites import architecture
from engine.inputs import EncodedRow, collate, encode
from engine.layout import SiteLayout
from engine.runners.pytorch import per_row_biases
from training.data import TaskData
from training.epochs import fit
from training.errors import ConfigError
from training.evaluate import metrics
from training.export import make_bias_set
from training.loop import bucketed_batches
from training.model import TrainModel, pooled_features, run_head
from training.scoring import batched_logits

log = logging.getLogger(__name__)

@dataclass
class JointTask:
    name: str
    data: TaskData


class JointBiases(nn.Module):
    """Per-task bias offsets ``[tasks, width]``, added per row at every site (``per_row_biases``)."""

    def __init__(self, encoder: nn.Module, num_tasks: int) -> None:
        super().__init__()
        self.layout = SiteLayout(encoder)
        self.register_buffer("base", self.layout.base().float())  # [width]: the backbone's own biases
        self.delta = nn.Parameter(torch.zeros(num_tasks, self.layout.width))  # [tasks, width]; zero = the backbone

    def rows(self, task_ids: torch.Tensor):
        """A block in which batch row ``i`` uses task ``task_ids[i]``'s biases (differentiably)."""
        return per_row_biases(self.layout, self.delta.index_select(0, task_ids) + self.base)  # rows: [batch, width]

    def absolute(self, task: int) -> dict[str, torch.Tensor]:
        """Site -> the task's absolute bias (base + offset)."""
        row = (self.base + self.delta[task].detach()).float().cpu()
        return {site: bias.clone() for site, bias in self.layout.split(row).items()}


def _make_head(model_type: str, hidden: int, num_labels: int, init_std: float) -> nn.ModuleList:
    stages = architecture(model_type).head
    layers = nn.ModuleList()
    for i in range(len(stages)):
        layer = nn.Linear(hidden, num_labels if i == len(stages) - 1 else hidden)
        nn.init.normal_(layer.weight, std=init_std)  # as transformers initialises a new head
        nn.init.zeros_(layer.bias)
        layers.append(layer)
    return layers


class JointModel(nn.Module):
    def __init__(self, tm: TrainModel, tasks: list[JointTask], pooling: str) -> None:
        super().__init__()
        self.tm, self.pooling, self.model_type = tm, pooling, tm.spec.model_type
        tm.model.requires_grad_(False)  # the backbone is frozen; only offsets and heads train
        self.biases = JointBiases(tm.model.base_model, len(tasks))
        std = getattr(tm.model.config, "initializer_range", 0.02)
        self.heads = nn.ModuleList(_make_head(self.model_type, tm.spec.hidden_size, len(t.data.labels), std) for t in tasks)

    def train(self, mode: bool = True) -> "JointModel":
        super().train(mode)
        self.tm.model.train(mode)  # the backbone is not a submodule (it is shared), but dropout follows
        return self

    def forward(self, batch: dict[str, torch.Tensor], task_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One shared forward; per task present: (row positions [n], logits [n, labels])."""
        with self.biases.rows(task_ids):
            out = self.tm.model.base_model(**batch)
        features = pooled_features(self.model_type, out, batch["attention_mask"], self.pooling)  # [batch, hidden]
        results = []
        for task in task_ids.unique().tolist():  # heads run per task group
            rows = (task_ids == task).nonzero().squeeze(1)  # [n]
            results.append((rows, run_head(list(self.heads[task]), self.model_type, features[rows], self.training)))
        return results


def _encode_tasks(tm: TrainModel, tasks: list[JointTask], length: int) -> tuple[list[tuple[int, EncodedRow, int]], list]:
    train_rows: list[tuple[int, EncodedRow, int]] = []  # (task, row, target)
    val_rows = []
    for k, t in enumerate(tasks):
        train_rows += [(k, r, y) for r, y in zip(encode(tm.tokenizer, t.data.train.texts, length), t.data.train.targets)]
        val_rows.append(encode(tm.tokenizer, t.data.validation.texts, length))
    return train_rows, val_rows


@torch.no_grad()
def _restore_best(joint: JointModel, best_states: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> None:
    """Each task keeps its own best epoch: its offsets and head as ``snapshot`` took them then."""
    for k, (delta, head) in enumerate(best_states):
        joint.biases.delta[k].copy_(delta)
        for p, v in zip(joint.heads[k].parameters(), head):
            p.copy_(v)


def _check_single_label(tasks: list[JointTask]) -> None:
    if any(t.data.problem_type != ProblemType.SINGLE_LABEL for t in tasks):
        raise ConfigError("joint training handles single-label classification tasks; train regression and "
                          "multi-label tasks one by one")


def _tell(observer, info: dict) -> None:
    """The jobs' progress and cancel checks (training/jobs/joint_run.py); may raise to stop."""
    if observer is not None:
        observer(info)


def train_joint(
    tm: TrainModel, tasks: list[JointTask], *, epochs: int = 3, lr: float = 1e-3, batch_size: int = 32,
    max_length: int = 128, pooling: Pooling = Pooling.CLS, seed: int = 42, clip: float = 1.0, device: str = "cpu",
    patience: int = 0, observer=None,
) -> dict:
    """Train every task's offsets and head together; returns bias sets and per-task metrics.

    Each task keeps its own best epoch; ``patience``: as ``epochs.fit``. ``observer``: as
    ``TrainConfig.observer`` (an evaluation's ``validation`` is a list, one per task).
    """
    _check_single_label(tasks)
    dev = torch.device(device)
    torch.manual_seed(seed)
    tm.model.to(dev)
    joint = JointModel(tm, tasks, pooling).to(dev)
    params = [joint.biases.delta, *joint.heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    train_rows, val_rows = _encode_tasks(tm, tasks, min(max_length, tm.max_length))
    pad = tm.tokenizer.pad_token_id or 0
    generator = torch.Generator().manual_seed(seed)

    def run_epoch(epoch: int) -> dict:
        joint.train()
        batches = bucketed_batches([r for _, r, _ in train_rows], batch_size, generator)  # rows of any tasks, similar lengths
        epoch_start, loss_sum = time.perf_counter(), torch.zeros((), device=dev)
        for step, indices in enumerate(batches, start=1):
            chunk = [train_rows[j] for j in indices]
            batch = collate([r for _, r, _ in chunk], pad, dev)
            task_ids = torch.tensor([k for k, _, _ in chunk], device=dev)
            targets = torch.tensor([y for _, _, y in chunk], device=dev)
            loss = sum(F.cross_entropy(logits, targets[rows], reduction="sum") for rows, logits in joint(batch, task_ids)) / len(chunk)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            loss_sum += loss.detach() * len(chunk)
            _tell(observer, {"phase": "train", "epoch": epoch, "epochs": epochs, "step": (epoch - 1) * len(batches) + step,
                             "total_steps": epochs * len(batches), "lr": lr, "base_lr": lr})
        seconds = time.perf_counter() - epoch_start
        scores = [evaluate_task(joint, k, rows, tasks[k].data.validation.targets, len(tasks[k].data.labels), dev)
                  for k, rows in enumerate(val_rows)]
        entry = {"epoch": epoch, "train_loss": loss_sum.item() / len(train_rows), "train_seconds": seconds,
                 "rows_per_second": len(train_rows) / seconds, "validation": scores}
        _tell(observer, {"phase": "evaluation", "step": epoch * len(batches), **entry})
        return entry

    def snapshot(k: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return joint.biases.delta[k].detach().clone(), [p.detach().clone() for p in joint.heads[k].parameters()]

    started = time.perf_counter()
    result = fit(epochs, patience, lr, run_epoch, lambda entry: [s["accuracy"] for s in entry["validation"]], snapshot)
    _restore_best(joint, result.best_states)
    joint.eval()
    history, best = result.history, result.best_epochs
    sets = [export_task(joint, k, t, pooling, {"method": "bitfit-joint", "best_epoch": best[k], "joint_tasks": len(tasks),
                                                "validation": history[best[k] - 1]["validation"][k]})
            for k, t in enumerate(tasks)]
    return {"bias_sets": sets, "history": history, "seconds": time.perf_counter() - started, "model": joint,
            "stopped_early": result.stopped_early}


def joint_logits(joint: JointModel, task: int, rows: list[EncodedRow], device: torch.device, batch_size: int = 128) -> torch.Tensor:
    """Logits [rows, labels] of one task in eval mode."""
    joint.eval()

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        [(_, logits)] = joint(batch, torch.full((batch["input_ids"].shape[0],), task, device=device))
        return logits

    num_labels = joint.heads[task][-1].out_features
    return batched_logits(rows, num_labels, joint.tm.tokenizer.pad_token_id or 0, device, batch_size, forward)


def evaluate_task(joint: JointModel, task: int, rows: list[EncodedRow], gold: list[int], num_labels: int, device: torch.device) -> dict:
    return metrics(ProblemType.SINGLE_LABEL, joint_logits(joint, task, rows, device), gold, num_labels)


def export_task(joint: JointModel, k: int, task: JointTask, pooling: str, training: dict) -> BiasSet:
    spec = joint.tm.spec
    tensors = {spec.site_key(site): bias for site, bias in joint.biases.absolute(k).items()}
    for layer, stage in zip(joint.heads[k], architecture(spec.model_type).head):
        tensors[f"{stage.name}.weight"] = layer.weight.detach().float().cpu().clone()
        tensors[f"{stage.name}.bias"] = layer.bias.detach().float().cpu().clone()
    return make_bias_set(joint.tm, tensors, task=task.name, labels=task.data.labels, problem_type=ProblemType.SINGLE_LABEL,
                         inputs=task.data.inputs, bias_sites="all", pooling=pooling, training=training)
