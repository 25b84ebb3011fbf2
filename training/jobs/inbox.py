"""The inbox as a producer of jobs: a spec dropped in ``bitfit worker --inbox`` becomes a
queued job (``--to-queue``), trained by whichever ``bitfit jobs worker`` claims it.

The spec's data files are checked and stored exactly as ``POST /jobs`` would; the spec's
name and bytes make the idempotency key, so a spec re-read after a crash is queued once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from training.jobs.config import AUTO, JobConfig
from training.jobs.datacheck import check_files
from training.jobs.errors import JobError
from training.jobs.queue import JobQueue
from training.jobs.records import JobRecord
from training.task import TaskSpec

# Spec fields a job config carries; any other field set away from its default is reported.
CARRIED = {"task", "train", "validation", "test", "text_column", "label_column", "text_pair_column", "problem_type",
           "method", "epochs", "lr", "batch_size", "max_length", "seed", "device", "backbone"}


def job_config(spec: TaskSpec) -> JobConfig:
    lr = AUTO if spec.lr in (AUTO, None) else spec.lr
    return JobConfig.parse({
        "task": spec.task, "text_column": spec.text_column, "label_column": spec.label_column,
        "text_pair_column": spec.text_pair_column, "problem_type": spec.problem_type, "method": spec.method,
        "publish": "always",  # what the inbox has always done
        "hyperparameters": {"learning_rate": lr, "epochs": AUTO if spec.epochs is None else spec.epochs,
                            "batch_size": spec.batch_size,
                            "max_length": spec.max_length, "seed": spec.seed},
    })


def dropped_fields(spec: TaskSpec) -> list[str]:
    """Spec fields set away from their defaults that a job does not carry (the job's worker decides them)."""
    defaults = TaskSpec(task=spec.task, train=spec.train, text_column=spec.text_column, label_column=spec.label_column)
    return sorted(name for name in vars(spec) if name not in CARRIED and getattr(spec, name) != getattr(defaults, name))


def enqueue_spec(queue: JobQueue, spec: TaskSpec, spec_path: Path) -> JobRecord:
    """Check the spec's files, store them, queue the job (JobError / DataFileError when they would not train)."""
    config = job_config(spec)
    paths = {split: getattr(spec, split) for split in ("train", "validation", "test") if getattr(spec, split)}
    for split, path in paths.items():
        if Path(path).is_dir():
            raise JobError(f"{split}: a saved-dataset folder cannot be queued as a job; export it to CSV/JSONL/Parquet")
    files = {split: (Path(path).read_bytes(), Path(path).name) for split, path in paths.items()}
    checked = check_files(files, config)
    ids = {split: queue.put_file(data, name, checked[split]["rows"], checked[split]["columns"]).id
           for split, (data, name) in files.items()}
    key = f"inbox:{spec_path.name}:{hashlib.sha256(spec_path.read_bytes()).hexdigest()}"
    return queue.submit(config, ids, idempotency_key=key)
