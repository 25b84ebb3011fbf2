"""A job's config: what ``POST /jobs``'s ``config`` JSON holds, checked field by field.

``"auto"`` hyperparameters map onto the recipe of ``bitfit train`` (training/task.py):
the learning rate is searched on the validation split, epochs/batch size/max length are
the CLI's defaults, and ``method: auto`` is the CLI's default method.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from bias_store.errors import InvalidTaskName
from bias_store.validate import check_task_name
from training.bitfit import METHODS
from training.data import REQUESTED_PROBLEM_TYPES
from training.jobs.errors import JobConfigError
from training.jobs.records import DEFAULT_MAX_ATTEMPTS, PUBLISH_POLICIES

AUTO = "auto"
# What "auto" means for each hyperparameter: the defaults of `bitfit train` (TaskSpec): epochs
# None is the step budget (training/budget.py); the learning rate's "auto" is the method's own
# rate, as `bitfit train` without --lr (docs/TRAINING.md has the evidence for both).
AUTO_DEFAULTS = {"epochs": None, "batch_size": 32, "max_length": 128}
LIMITS = {"epochs": (1, 100), "batch_size": (1, 1024), "max_length": (8, 512)}
MAX_ATTEMPTS_LIMIT = 10


def _default_hyperparameters() -> dict:
    return {"learning_rate": AUTO, "epochs": AUTO, "batch_size": AUTO, "max_length": AUTO, "seed": 42}


@dataclass
class JobConfig:
    task: str
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    problem_type: str = "auto"
    method: str = "auto"
    hyperparameters: dict = field(default_factory=_default_hyperparameters)
    publish: str = "if_better"  # always | if_better | never (if_better for a new task = always)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @classmethod
    def parse(cls, raw: dict) -> JobConfig:
        """A checked config; JobConfigError (HTTP 422) names the first wrong field."""
        if not isinstance(raw, dict):
            raise JobConfigError("(root)", f"a job config is a JSON object, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for name in raw:
            if name not in known:
                raise JobConfigError(name, f"unknown field; known fields: {sorted(known)}")
        if "task" not in raw:
            raise JobConfigError("task", "required: the name of the task the job trains and publishes")
        task = raw["task"]
        try:
            check_task_name(task if isinstance(task, str) else "")
        except InvalidTaskName as exc:
            raise JobConfigError("task", str(exc)) from None
        values = {"task": task}
        for name in ("text_column", "label_column", "text_pair_column"):
            if name in raw and not (raw[name] is None and name == "text_pair_column"):
                if not isinstance(raw[name], str) or not raw[name].strip():
                    raise JobConfigError(name, f"must be a non-empty column name, got {raw[name]!r}")
                values[name] = raw[name]
        values |= _choices(raw)
        values["hyperparameters"] = _hyperparameters(raw.get("hyperparameters", {}))
        values["max_attempts"] = _integer(raw.get("max_attempts", DEFAULT_MAX_ATTEMPTS), "max_attempts",
                                          1, MAX_ATTEMPTS_LIMIT)
        config = cls(**values)
        if config.text_pair_column and config.text_pair_column in (config.text_column, config.label_column):
            raise JobConfigError("text_pair_column", "must differ from text_column and label_column")
        if config.text_column == config.label_column:
            raise JobConfigError("label_column", "must differ from text_column")
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def resolved_method(self) -> str:
        from training.task import TaskSpec

        return TaskSpec.method if self.method == AUTO else self.method

    def task_spec(self, train: str, validation: str | None = None, test: str | None = None, **extra):
        """The ``bitfit train`` run this job is (``extra``: worker-side fields such as device, backbone)."""
        from training.task import TaskSpec

        hp = self.hyperparameters
        lr = hp.get("learning_rate", AUTO)

        def pick(name: str) -> int | None:
            value = hp.get(name, AUTO)
            return AUTO_DEFAULTS[name] if value == AUTO else value

        return TaskSpec(
            task=self.task, train=train, validation=validation, test=test, text_column=self.text_column,
            label_column=self.label_column, text_pair_column=self.text_pair_column, problem_type=self.problem_type,
            method=self.resolved_method, epochs=pick("epochs"), batch_size=pick("batch_size"),
            max_length=pick("max_length"), lr=None if lr == AUTO else float(lr), seed=int(hp.get("seed", 42)),
            **extra,
        ).check()


def _choices(raw: dict) -> dict:
    out = {}
    choices = {"problem_type": REQUESTED_PROBLEM_TYPES, "method": (AUTO, *METHODS), "publish": PUBLISH_POLICIES}
    for name, allowed in choices.items():
        if name in raw:
            if raw[name] not in allowed:
                raise JobConfigError(name, f"must be one of {list(allowed)}, got {raw[name]!r}")
            out[name] = raw[name]
    if out.get("method") == "full":
        raise JobConfigError("method", "full fine-tuning exports no bias set and cannot be published; "
                             f"choose one of {[m for m in METHODS if m != 'full']}")
    return out


def _hyperparameters(raw) -> dict:
    if not isinstance(raw, dict):
        raise JobConfigError("hyperparameters", f"must be an object, got {raw!r}")
    out = _default_hyperparameters()
    for name, value in raw.items():
        where = f"hyperparameters.{name}"
        if name not in out:
            raise JobConfigError(where, f"unknown hyperparameter; known: {sorted(out)}")
        if name == "learning_rate":
            if value != AUTO and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not (math.isfinite(value) and 0 < value <= 1)):
                raise JobConfigError(where, f"must be 'auto' or a number in (0, 1], got {value!r}")
        elif name == "seed":
            value = _integer(value, where, 0, 2**31 - 1)
        elif value != AUTO:
            value = _integer(value, where, *LIMITS[name])
        out[name] = value
    return out


def _integer(value, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise JobConfigError(where, f"must be an integer from {low} to {high}, got {value!r}")
    return value
