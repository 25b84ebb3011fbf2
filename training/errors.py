"""Errors of the training module. Each says what is wrong and where (file, row, column)."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class: anything that stops a task from being trained or published."""


class DataError(TrainingError):
    """Bad input data, found before training starts."""

    def __init__(self, message: str, file: str | None = None, row: int | None = None, column: str | None = None) -> None:
        where = [f"file {file}"] if file else []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.file, self.row, self.column, self.reason = file, row, column, message


class ConfigError(TrainingError):
    """An option or a task spec that cannot work (unknown method, bad value...)."""


def missing_train_extra() -> str | None:
    """A one-line fix when the packages of the ``train`` extra are not installed (e.g. in the
    server image), instead of an ImportError deep inside training."""
    import importlib.util

    missing = [m for m in ("pandas", "pyarrow", "matplotlib", "bitfit_client") if importlib.util.find_spec(m) is None]
    if missing:
        return f"training needs {', '.join(missing)}: pip install 'bitfit-serve[train]' (and clients/python for bitfit_client)"
    return None


def preflight_problem(backbone: str | None) -> str | None:
    """What stops `bitfit train` / `bitfit worker` before anything loads: a missing `train`
    extra, or a backbone that does not exist (one line, naming the flag)."""
    if problem := missing_train_extra():
        return problem
    from engine.backbone import backbone_problem

    if problem := backbone_problem(backbone):
        return f"--backbone: {problem}"
    return None


class PublishError(TrainingError):
    """The bias set could not be written, stored or uploaded."""
