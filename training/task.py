"""One task from data files to a bias set and a run folder; shared by ``bitfit train`` and the worker."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bias_store.errors import InvalidTaskName
from bias_store.format import MAX_LABELS, BiasSet
from bias_store.kinds import Pooling, ProblemType
from bias_store.spec import BackboneSpec
from bias_store.validate import check_task_name
from engine.backbone import backbone_name
from training.bitfit import method as get_method
from training.budget import MAX_SECONDS, MAX_STEPS, MIN_STEPS, PATIENCE
from training.data import load_task_data
from training.errors import ConfigError
from training.export import export_bias_set
from training.loop import TrainConfig, train
from training.lr_search import choose_lr
from training.model import TrainModel, check_pooling, default_pooling, load_model
from training.report import build_report, recipe_of, run_config, training_summary, write_run

log = logging.getLogger(__name__)

AUTO = "auto"


@dataclass
class TaskSpec:
    """Everything that defines one training run (the CLI flags, or a worker's spec file)."""

    task: str
    train: str
    text_column: str
    label_column: str
    validation: str | None = None
    test: str | None = None
    text_pair_column: str | None = None
    problem_type: str = "auto"  # auto | classification | multi-label | regression
    # Biases + LayerNorm gains: measured better than biases alone (docs/benchmarks/accuracy.md).
    method: str = "bitfit-ln"
    backbone: str | None = None  # None: the packaged MiniLM
    pooling: str | None = None  # None: the backbone's default (see model.default_pooling)
    epochs: int | None = None  # None: the step budget below (training/budget.py); N: exactly N epochs
    min_steps: int = MIN_STEPS
    max_steps: int = MAX_STEPS
    max_seconds: float | None = MAX_SECONDS  # training's wall-clock budget; None or 0: none
    # None: the method's rate (training/bitfit.py; why no search by default: docs/TRAINING.md);
    # "auto": chosen on validation (lr_search.py)
    lr: float | str | None = None
    head_lr: float | None = None  # None: the method's head rate (training/bitfit.py)
    schedule: str = "linear"  # warm-up + linear decay, or "constant" (the paper's)
    batch_size: int = 32
    max_length: int = 128
    seed: int = 42
    patience: int = PATIENCE  # evaluations without a better validation score
    weight_decay: float = 0.0
    clip: float = 1.0
    device: str = "cpu"

    def check(self) -> "TaskSpec":
        try:
            check_task_name(self.task)
        except InvalidTaskName as exc:
            raise ConfigError(str(exc)) from None
        get_method(self.method)
        if self.pooling is not None:
            check_pooling(self.pooling)
        if isinstance(self.lr, str) and self.lr != AUTO:
            raise ConfigError(f"lr must be a positive number or {AUTO!r}, got {self.lr!r}")
        self.train_config().check()
        return self

    @property
    def searches_lr(self) -> bool:
        return self.lr == AUTO

    def train_config(self, progress: bool = True) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, min_steps=self.min_steps, max_steps=self.max_steps, max_seconds=self.max_seconds or None,
            lr=None if self.searches_lr else self.lr, head_lr=self.head_lr, schedule=self.schedule,
            batch_size=self.batch_size, max_length=self.max_length,
            pooling=check_pooling(self.pooling or Pooling.CLS), seed=self.seed, weight_decay=self.weight_decay, clip=self.clip,
            patience=self.patience, device=self.device, progress=progress,
        )

    @classmethod
    def from_dict(cls, raw: dict, base_dir: Path | None = None) -> "TaskSpec":
        """A spec from a YAML/JSON mapping; data paths are relative to ``base_dir``."""
        if not isinstance(raw, dict):
            raise ConfigError("a task spec must be a mapping of option names to values")
        raw = {k.replace("-", "_"): v for k, v in raw.items()}
        if "name" in raw and "task" not in raw:
            raw["task"] = raw.pop("name")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown spec fields {unknown}; known: {sorted(known)}")
        missing = [f for f in ("task", "train", "text_column", "label_column") if not raw.get(f)]
        if missing:
            raise ConfigError(f"the spec is missing required fields {missing}")
        for key in ("train", "validation", "test"):
            if raw.get(key) and base_dir is not None and not Path(raw[key]).is_absolute():
                raw[key] = str(base_dir / raw[key])
        types = {"epochs": int, "batch_size": int, "max_length": int, "seed": int, "patience": int, "min_steps": int,
                 "max_steps": int, "lr": float, "head_lr": float, "weight_decay": float, "clip": float, "max_seconds": float}
        for key, kind in types.items():
            if raw.get(key) is not None and raw[key] != AUTO:
                try:
                    raw[key] = kind(raw[key])
                except (TypeError, ValueError):
                    raise ConfigError(f"spec field {key!r} must be a {kind.__name__}, got {raw[key]!r}") from None
        return cls(**raw).check()


@dataclass
class TaskOutcome:
    bias_set: BiasSet | None  # None for the full fine-tuning baseline
    report: dict
    model: TrainModel = field(repr=False)


def run_task(
    spec: TaskSpec, run_dir: str | Path | None = None, progress: bool = True, eval_train: bool = False,
    token_cache: dict | None = None, before_training: Callable[[BackboneSpec], None] | None = None,
    max_seconds: float | None = None, observer: Callable[[dict], None] | None = None,
) -> TaskOutcome:
    """Check the data, train, evaluate, export and write the run folder. Bad input fails before training.

    ``before_training`` sees the loaded backbone's spec first (e.g. a push destination
    checks that its server serves the same backbone) and may raise to stop the run.
    ``observer`` is told of every step and evaluation (TrainConfig.observer) and may raise to stop it.
    """
    spec.check()
    m = get_method(spec.method)
    data = load_task_data(
        spec.train, spec.text_column, spec.label_column, validation=spec.validation, test=spec.test,
        pair_column=spec.text_pair_column, problem_type=spec.problem_type, seed=spec.seed,
    )
    num_labels = 1 if data.problem_type == ProblemType.REGRESSION else len(data.labels)
    if num_labels > MAX_LABELS:  # the server would refuse the upload: say so before training
        raise ConfigError(f"the label column {spec.label_column!r} has {num_labels} distinct labels; a served task "
                          f"may have at most {MAX_LABELS}")
    tm = load_model(spec.backbone, num_labels, data.problem_type, spec.seed)
    if before_training is not None:
        before_training(tm.spec)
    pooling = spec.pooling or default_pooling(spec.backbone)
    # The tighter of the spec's budget and the caller's (the worker's --max-train-seconds).
    limits = [t for t in (spec.max_seconds, max_seconds) if t]
    cfg = dataclasses.replace(spec.train_config(progress), pooling=pooling, eval_train=eval_train,
                              max_seconds=min(limits) if limits else None, observer=observer)
    log.info("task %s: %d train / %d validation / %d test rows, labels %s, pooling %s", spec.task,
             len(data.train), len(data.validation), len(data.test) if data.test else 0, data.labels, pooling)
    lr_choice = None
    if spec.searches_lr:
        lr_choice = choose_lr(tm, data, m, cfg, token_cache)
        cfg = dataclasses.replace(cfg, lr=lr_choice.lr)
    result = train(tm, data, m, cfg, token_cache)

    config = run_config(dataclasses.asdict(spec), pooling, result, backbone_name(spec.backbone or tm.base_model))
    recipe = recipe_of(cfg, result, lr_choice)
    summary = training_summary(m, config, data, result, recipe)
    report = build_report(spec.task, config, data, result, tm.spec.fingerprint, recipe)
    bias_set = None
    if m.exports_bias_set:
        bias_set = export_bias_set(
            tm, m, task=spec.task, labels=data.labels, problem_type=data.problem_type, inputs=data.inputs,
            pooling=pooling, training=summary, thresholds=result.details.get("thresholds"),
        )
        report["bias_set"] = {"params": bias_set.num_params, "bytes": bias_set.num_bytes, "bias_sites": m.bias_sites}
    if run_dir:
        write_run(run_dir, report)
    return TaskOutcome(bias_set, report, tm)


def default_run_dir(task: str) -> Path:
    return Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
