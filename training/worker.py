"""Tasks arriving in a stream: train and publish each spec dropped into an inbox folder.

Layout of the inbox::

    inbox/<name>.yaml|.yml|.json     a new spec (data paths relative to inbox/)
    inbox/processing/<name>.yaml      claimed: being trained (a restart trains it again)
    inbox/done/<name>/                the spec, report.json, learning_curves.png, result.json and
                                      confusion_matrix.png (single-label) or per_label.png (multi-label)
    inbox/failed/<name>/              the spec, error.txt and whatever the run produced (a bias set
                                      whose push failed, report.json, the plots)

A spec is claimed by renaming it into ``processing/``, so two workers on one inbox never
train the same spec. Given a job queue (``--to-queue``), the worker trains nothing: each spec
becomes a queued job (training/jobs/inbox.py) and done/<name>/job.json names it.
One task runs at a time; a bad task is moved to ``failed/`` and the worker goes on. Every
task's backbone is loaded afresh and never written, so publishing task N cannot change
what tasks 1..N-1 compute.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from training.errors import ConfigError, TrainingError
from training.publish import Target, publish
from training.task import TaskSpec, run_task

log = logging.getLogger(__name__)

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class WorkerResult:
    spec: str  # file name of the spec
    ok: bool
    folder: Path  # its done/ or failed/ folder
    error: str | None = None


DATA_FIELDS = ("train", "validation", "test")
MAX_EPOCHS = 100  # the worker's default bound on a spec's epochs (--max-epochs)
MAX_TRAIN_SECONDS = 6 * 3600  # and on its training time (--max-train-seconds)


def confined(value: object, base_dir: Path, roots: list[Path]) -> str:
    """A spec's data path, resolved (symlinks followed) and refused unless inside one of
    ``roots``: a spec dropped in the inbox must not read ``../secret.csv`` or ``/etc/...``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"a data path must be a non-empty string, got {value!r}")
    resolved = (base_dir / value).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise ConfigError(f"data path {value!r} resolves outside the inbox" + (" and --data-root" if len(roots) > 1 else "")
                          + "; give a path inside it (symlinks out are refused too)")
    return str(resolved)


def read_spec(
    path: Path, base_dir: Path, defaults: dict | None = None, roots: list[Path] | None = None, max_epochs: int | None = None,
) -> TaskSpec:
    """Parse a YAML or JSON spec; ``defaults`` fill fields the spec leaves out (backbone, device...).
    With ``roots``, every data path must resolve inside one of them; ``max_epochs`` bounds ``epochs``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: the spec is not UTF-8 text") from None
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:  # json and yaml both raise their own parse errors
        raise ConfigError(f"{path.name}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name}: a spec is a mapping like {{name: ..., train: ..., text_column: ..., label_column: ...}}")
    try:
        if roots is not None:
            raw = {**raw, **{k: confined(raw[k], base_dir, roots) for k in DATA_FIELDS if raw.get(k) is not None}}
        spec = TaskSpec.from_dict({**(defaults or {}), **raw}, base_dir)
        if max_epochs is not None and spec.epochs is not None and spec.epochs > max_epochs:
            raise ConfigError(f"epochs is {spec.epochs}; this worker trains at most {max_epochs} (--max-epochs)")
        return spec
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None


class Worker:
    def __init__(
        self,
        inbox: str | Path,
        target: Target,
        defaults: dict | None = None,
        settle_seconds: float = 1.0,
        progress: bool = False,
        data_roots: list[Path] | None = None,
        max_epochs: int = MAX_EPOCHS,
        max_train_seconds: float = MAX_TRAIN_SECONDS,
        queue=None,
    ) -> None:
        self.inbox = Path(inbox)
        self.roots = [self.inbox, *(Path(r) for r in data_roots or ())]  # where a spec's data may live
        self.max_epochs, self.max_train_seconds = max_epochs, max_train_seconds
        self.target = target.check()
        self.defaults = defaults or {}
        # A spec younger than this may still be being written; writers that rename into the
        # inbox are safe with 0.
        self.settle_seconds = settle_seconds
        self.progress = progress
        self.queue = queue  # a training.jobs JobQueue: specs become jobs instead of being trained here
        self.processing, self.done, self.failed = (self.inbox / d for d in ("processing", "done", "failed"))
        for folder in (self.inbox, self.processing, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    def pending(self) -> list[Path]:
        """Leftovers from an interrupted run first, then new specs, oldest first."""
        def specs(folder: Path) -> list[Path]:
            return [p for p in folder.iterdir() if p.is_file() and p.suffix in SPEC_SUFFIXES and not p.name.startswith(".")]

        now = time.time()
        fresh = [p for p in specs(self.inbox) if now - p.stat().st_mtime >= self.settle_seconds]
        leftovers = sorted(specs(self.processing), key=lambda p: (p.stat().st_mtime, p.name))
        return leftovers + sorted(fresh, key=lambda p: (p.stat().st_mtime, p.name))

    def _claim(self, path: Path) -> Path | None:
        if path.parent == self.processing:
            log.info("resuming %s, left over from before a restart", path.name)
            return path
        claimed = self.processing / path.name
        try:
            path.rename(claimed)  # atomic: of two workers, one wins
        except FileNotFoundError:
            return None
        return claimed

    def _folder(self, parent: Path, stem: str) -> Path:
        folder = parent / stem
        if folder.exists():
            folder = parent / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 1_000_000:06d}"
        folder.mkdir(parents=True)
        return folder

    def process(self, path: Path) -> WorkerResult | None:
        """Train, evaluate and publish one spec; never raises for a bad task."""
        claimed = self._claim(path)
        if claimed is None:
            return None
        run_dir = self.processing / f".{claimed.stem}.run"
        if self.queue is not None:
            return self._enqueue(claimed, run_dir)
        try:
            spec = read_spec(claimed, self.inbox, self.defaults, self.roots, self.max_epochs)
            self.target.preflight()  # a server that is down fails the task now, not after training
            log.info("training task %s from %s", spec.task, claimed.name)
            outcome = run_task(spec, run_dir, progress=self.progress, before_training=self.target.check_backbone,
                               max_seconds=self.max_train_seconds)
            published = (
                publish(outcome.bias_set, outcome.model.spec, self.target, keep_dir=run_dir) if outcome.bias_set is not None else None
            )
        except TrainingError as exc:
            return self._fail(claimed, run_dir, str(exc))
        except Exception as exc:  # a bug or an odd input must not kill the worker
            log.exception("task %s failed unexpectedly", claimed.name)
            return self._fail(claimed, run_dir, f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        folder = self._folder(self.done, claimed.stem)
        for item in run_dir.iterdir():
            shutil.move(str(item), folder / item.name)
        run_dir.rmdir()
        result = {"task": spec.task, "published": published, "validation": outcome.report["validation"],
                  "test": outcome.report["test"], "best_epoch": outcome.report["best_epoch"]}
        (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        claimed.rename(folder / claimed.name)
        log.info("task %s done: %s", spec.task, self.target.describe())
        return WorkerResult(claimed.name, True, folder)

    def _enqueue(self, claimed: Path, run_dir: Path) -> WorkerResult:
        """The spec as a queued job; done/<name>/job.json names it (failed/ as usual when it cannot train)."""
        from training.jobs.errors import JobError
        from training.jobs.inbox import dropped_fields, enqueue_spec

        try:
            spec = read_spec(claimed, self.inbox, {}, self.roots, self.max_epochs)
            job = enqueue_spec(self.queue, spec, claimed)
        except (TrainingError, JobError) as exc:
            return self._fail(claimed, run_dir, str(exc))
        folder = self._folder(self.done, claimed.stem)
        note = {"task": spec.task, "job": job.id, "status": job.status, "ignored_spec_fields": dropped_fields(spec)}
        (folder / "job.json").write_text(json.dumps(note, indent=2) + "\n")
        claimed.rename(folder / claimed.name)
        log.info("spec %s queued as job %s", claimed.name, job.id)
        return WorkerResult(claimed.name, True, folder)

    def _fail(self, claimed: Path, run_dir: Path, error: str) -> WorkerResult:
        folder = self._folder(self.failed, claimed.stem)
        error = error.replace(str(run_dir), str(folder))  # paths in the message name where the files end up
        (folder / "error.txt").write_text(error.rstrip() + "\n")
        if run_dir.exists():
            # Whatever the run produced (the bias set of a failed push, report, plot) is kept.
            for item in run_dir.iterdir():
                shutil.move(str(item), folder / item.name)
            run_dir.rmdir()
        claimed.rename(folder / claimed.name)
        log.warning("task %s failed: %s", claimed.name, error.splitlines()[0] if error else "")
        return WorkerResult(claimed.name, False, folder, error)

    def run_once(self) -> list[WorkerResult]:
        """Process every spec pending now, one at a time."""
        results = []
        for path in self.pending():
            result = self.process(path)
            if result is not None:
                results.append(result)
        return results

    def run_forever(self, stop: threading.Event | None = None, interval: float = 2.0) -> None:
        stop = stop or threading.Event()
        log.info("watching %s; publishing to %s", self.inbox, self.target.describe())
        while not stop.is_set():
            if not self.run_once():
                stop.wait(interval)
