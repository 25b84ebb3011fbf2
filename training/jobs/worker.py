"""A training worker of the job queue: claim, download, train, publish by policy, finish.

``bitfit jobs worker --store DIR|s3://...`` runs one (training/jobs/cli.py). Many can run
against one store, on one machine or many (deploy/ray/): the queue's leases make sure a job
is trained by one worker at a time, and a dead worker's job is run again by another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import traceback
from pathlib import Path

from bias_store.errors import StoreUnavailable
from training.errors import TrainingError
from training.jobs.config import JobConfig
from training.jobs.errors import Cancelled, JobError, LeaseLost
from training.jobs.heartbeat import POLL_S, Heartbeat
from training.jobs.joint_run import joint_key, run_joint
from training.jobs.leases import CANCEL, LOST
from training.jobs.progress import EVENT_S, JobProgress
from training.jobs.publishing import decide, job_version, publish_once
from training.jobs.queue import JobQueue
from training.jobs.records import JobRecord, Lease

log = logging.getLogger(__name__)

MAX_TRAIN_SECONDS = 6 * 3600
ARTIFACTS = ("report.json", "learning_curves.png", "confusion_matrix.png", "per_label.png")


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


def open_target(target):
    """The bias store jobs publish into: a BiasStore, a training.publish.Target with ``store``, or a URL."""
    if isinstance(target, (str, os.PathLike)):
        from bias_store.open_store import open_store

        return open_store(target)
    if hasattr(target, "open_store"):
        return target.open_store()
    return target


class JobWorker:
    def __init__(self, queue: JobQueue, target, worker_id: str | None = None, lease_s: float = 30.0,
                 device: str = "cpu", backbone: str | None = None, max_train_seconds: float = MAX_TRAIN_SECONDS,
                 poll_s: float = POLL_S, event_s: float = EVENT_S, joint: int = 1) -> None:
        self.queue, self.store = queue, open_target(target)
        self.worker_id = worker_id or default_worker_id()
        self.lease_s, self.device, self.backbone = lease_s, device, backbone
        self.max_train_seconds, self.poll_s, self.event_s = max_train_seconds, poll_s, event_s
        self.joint = joint  # the most queued jobs of one backbone trained together in one joint run
        self._engine = None  # built on the first if_better comparison, then kept

    def engine(self):
        if self._engine is None:
            from engine import Engine, load_backbone

            self._engine = Engine(load_backbone(self.backbone, device=self.device))
        return self._engine

    # -- the loop ----------------------------------------------------------------------
    def run_once(self) -> JobRecord | None:
        """Claim one job (with ``joint > 1``, also queued jobs that can train with it) and run it
        to its end; None when the queue had none (or the lease was lost)."""
        lease = self.queue.claim(self.worker_id, self.lease_s)
        if lease is None:
            return None
        key = joint_key(self.queue.get(lease.job_id)) if self.joint > 1 else None
        if key is not None:
            more = self.queue.claim_many(self.worker_id, self.lease_s, self.joint - 1,
                                         match=lambda record: joint_key(record) == key)
            if more:
                return self.run_group([lease, *more])
        return self.run(lease)

    def run_forever(self, stop: threading.Event, idle_sleep: float = 1.0) -> None:
        log.info("jobs worker %s: claiming jobs (lease %.0f s)", self.worker_id, self.lease_s)
        while not stop.is_set():
            try:
                ran = self.run_once()
            except StoreUnavailable as exc:
                log.warning("the store is unavailable: %s", exc)
                ran = None
            if ran is None:
                stop.wait(idle_sleep)

    # -- one job -----------------------------------------------------------------------
    def run(self, lease: Lease) -> JobRecord | None:
        """Train, publish and finish the claimed job; never raises for a bad job."""
        record = self.queue.get(lease.job_id)
        log.info("job %s (task %s): attempt %d on %s", lease.job_id, record.task, lease.attempt, self.worker_id)
        with tempfile.TemporaryDirectory(prefix=f"bitfit-{lease.job_id}-") as tmp, \
                Heartbeat(self.queue, lease, poll_s=self.poll_s) as heartbeat:
            return self.guarded(lease, self._train_and_publish, lease, record, Path(tmp), heartbeat)

    def run_group(self, leases: list[Lease]) -> JobRecord | None:
        """Train several claimed jobs in one joint run (joint_run.py); each is finished on its own."""
        log.info("jobs %s: one joint run on %s", ", ".join(lease.job_id for lease in leases), self.worker_id)
        with tempfile.TemporaryDirectory(prefix="bitfit-joint-") as tmp, contextlib.ExitStack() as stack:
            beats = [stack.enter_context(Heartbeat(self.queue, lease, poll_s=self.poll_s)) for lease in leases]
            try:
                done = run_joint(self, leases, Path(tmp), beats)
            except Exception as exc:  # the shared run failed: each job still running fails with the reason
                log.exception("the joint run of %d jobs failed", len(leases))
                reason = str(exc) if isinstance(exc, (TrainingError, JobError)) else f"{type(exc).__name__}: {exc}"
                done = [self._end(lease, "failed", error=f"the joint run failed: {reason}") for lease in leases]
        return next((record for record in done if record is not None), None)

    def guarded(self, lease: Lease, work, *args) -> JobRecord | None:
        """``work(*args)`` for one job, every way it can end turned into the job's end (never raises)."""
        try:
            return work(*args)
        except Cancelled:
            return self._end(lease, "cancelled", {"published": False, "version": None,
                                                  "decision": {"reason": "cancelled before publishing"}})
        except LeaseLost as exc:
            log.warning("%s; stopping without publishing", exc)
            return self.queue.get(lease.job_id)  # the job as it is now (another worker's, or ended)
        except StoreUnavailable as exc:  # cannot even record a failure: the lease expires, the job re-runs
            log.warning("job %s: the store is unavailable (%s); leaving it to be re-queued", lease.job_id, exc)
            return None
        except (TrainingError, JobError) as exc:
            return self._end(lease, "failed", error=str(exc))
        except Exception as exc:  # a bug or an odd input must not kill the worker
            log.exception("job %s failed unexpectedly", lease.job_id)
            return self._end(lease, "failed", error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")

    def _end(self, lease: Lease, status: str, result: dict | None = None, error: str | None = None) -> JobRecord | None:
        try:
            return self.queue.finish(lease, status, result, error)
        except LeaseLost as exc:  # e.g. the heartbeat already ended it as cancelled
            log.info("%s", exc)
            return self.queue.get(lease.job_id)

    def _spec(self, record: JobRecord, config: JobConfig, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for split, file_id in record.files.items():
            suffix = Path(self.queue.file(file_id).filename).suffix.lower() or ".csv"
            path = folder / f"{split}{suffix}"
            path.write_bytes(self.queue.file_bytes(file_id))
            paths[split] = str(path)
        return config.task_spec(paths["train"], paths.get("validation"), paths.get("test"), device=self.device,
                                backbone=self.backbone)

    def _train_and_publish(self, lease: Lease, record: JobRecord, folder: Path, heartbeat: Heartbeat) -> JobRecord | None:
        from training.data import load_task_data
        from training.task import run_task

        if lease.attempt > 1 and (version := job_version(self.store, record.task, lease.job_id)) is not None:
            self.queue.event(lease, "message", f"v{version} of {record.task} is already this job's: an earlier attempt "
                             "published it and stopped before recording it")
            return self._end(lease, "succeeded", {"published": True, "version": version, "generation": self.store.generation(),
                                                  "decision": {"reason": "published by an earlier attempt"}})
        config = JobConfig.parse(record.config)
        spec = self._spec(record, config, folder)
        observer = JobProgress(self.queue, heartbeat, self.event_s)
        outcome = run_task(spec, folder / "run", progress=False, max_seconds=self.max_train_seconds, observer=observer)
        heartbeat.update(metrics=observer.metrics, learning_rate=outcome.report["recipe"]["lr"])
        if heartbeat.flush() in (CANCEL, LOST):
            observer.check()
        for name in ARTIFACTS:
            if (folder / "run" / name).exists():
                self.queue.put_artifact(lease, name, (folder / "run" / name).read_bytes())

        def data():
            return load_task_data(spec.train, spec.text_column, spec.label_column, validation=spec.validation,
                                  test=spec.test, pair_column=spec.text_pair_column, problem_type=spec.problem_type,
                                  seed=spec.seed)

        report = outcome.report
        summary = {"validation": report["validation"], "test": report["test"], "best_epoch": report["best_epoch"],
                   "learning_rate": report["recipe"]["lr"]}
        return self._finish_trained(lease, record, config, outcome.bias_set, outcome.model.spec, data, summary, observer)

    def _finish_trained(self, lease: Lease, record: JobRecord, config: JobConfig, bias_set, backbone_spec, data,
                        summary: dict, observer: JobProgress) -> JobRecord | None:
        """Apply the publish policy to a trained set (exactly once) and finish the job."""
        decision = decide(config.publish, self.engine, bias_set, self.store, data)
        self.queue.event(lease, "message", decision["reason"], {k: v for k, v in decision.items() if k != "reason"})
        observer.check()  # a cancel that came during the comparison: nothing is published
        version, generation, stored = None, None, False
        if decision["publish"]:
            version, generation, stored = publish_once(self.store, self.queue, lease, bias_set, backbone_spec, decision)
            self.queue.event(lease, "message", f"published {record.task} v{version}" if stored
                             else f"{record.task} v{version} was already published by this job")
        result = {"published": version is not None, "version": version, "generation": generation,
                  "decision": {k: v for k, v in decision.items() if k != "scores"},
                  "scores": decision.get("scores") or {}, **summary}
        return self._end(lease, "succeeded", result)
