"""Several queued jobs trained together in one joint run (training/joint.py): mixed-task
batches share every forward and backward pass of the frozen backbone; each task keeps its
own head and best epoch. Each job still gets its own events, report, decision and version.

Only jobs that would train the same way can share a run: method ``bitfit`` (joint training
trains every bias, as that method does), one fixed learning rate, the same epochs, batch
size, maximum length and seed, single-label classification. ``joint_key`` says which.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from training.errors import TrainingError
from training.jobs.config import JobConfig
from training.jobs.errors import Cancelled, JobError
from training.jobs.heartbeat import Heartbeat
from training.jobs.progress import JobProgress
from training.jobs.records import JobRecord, Lease

log = logging.getLogger(__name__)

JOINT_METHOD = "bitfit"


def joint_key(record: JobRecord) -> tuple | None:
    """What jobs must share to train in one joint run; None: this job trains alone."""
    config, hp = record.config, record.config.get("hyperparameters", {})
    if config.get("method") != JOINT_METHOD or config.get("problem_type") not in ("auto", "classification"):
        return None
    if config.get("text_pair_column") or any(hp.get(k) == "auto" for k in ("learning_rate", "epochs", "batch_size",
                                                                              "max_length")):
        return None
    return (hp["learning_rate"], hp["epochs"], hp["batch_size"], hp["max_length"], hp.get("seed", 42))


class FanOut:
    """The joint loop's observer: each job's JobProgress; a cancelled job ends now, the run goes on."""

    def __init__(self, worker, members: list[dict]) -> None:
        self.worker, self.members = worker, members

    def __call__(self, info: dict) -> None:
        for k, member in enumerate(self.members):
            if member["done"]:
                continue
            own = info if info["phase"] != "evaluation" else {**info, "validation": info["validation"][k]}
            try:
                member["progress"](own)
            except Cancelled:
                member["done"] = True
                self.worker._end(member["lease"], "cancelled", {"published": False, "version": None,
                                                                "decision": {"reason": "cancelled during a joint run"}})
        if all(m["done"] for m in self.members):
            raise Cancelled("every job of the joint run was cancelled")


def _report(record: JobRecord, k: int, tasks: list[str], jobs: list[str], result: dict, bias_set) -> dict:
    training = bias_set.meta.training
    history = [{**{n: e[n] for n in ("epoch", "train_loss", "train_seconds", "rows_per_second")},
                "validation": e["validation"][k]} for e in result["history"]]
    return {"task": record.task, "config": record.config, "labels": bias_set.meta.labels, "problem_type": "single_label_classification",
            "joint": {"tasks": tasks, "jobs": jobs, "seconds": result["seconds"]}, "history": history, "steps": [],
            "best_epoch": training["best_epoch"], "selection_metric": "accuracy", "validation": training["validation"],
            "test": None, "stopped_early": result["stopped_early"]}


def _loader(data):
    return lambda: data


def run_joint(worker, leases: list[Lease], folder: Path, heartbeats: list[Heartbeat]) -> list[JobRecord | None]:
    """Train the claimed jobs together, then publish and finish each; jobs that cannot join train alone."""
    from bias_store.kinds import ProblemType
    from training.data import load_task_data
    from training.joint import JointTask, train_joint
    from training.model import default_pooling, load_model

    members, finished = [], []
    for lease, heartbeat in zip(leases, heartbeats):
        record = worker.queue.get(lease.job_id)
        try:
            spec = worker._spec(record, JobConfig.parse(record.config), folder / lease.job_id)
            data = load_task_data(spec.train, spec.text_column, spec.label_column, validation=spec.validation,
                                  test=spec.test, problem_type=spec.problem_type, seed=spec.seed)
        except (TrainingError, JobError) as exc:
            finished.append(worker._end(lease, "failed", error=str(exc)))
            continue
        if data.problem_type != ProblemType.SINGLE_LABEL:  # joint training is single-label only: alone, now
            finished.append(worker.guarded(lease, worker._train_and_publish, lease, record, folder / lease.job_id,
                                           heartbeat))
            continue
        members.append({"lease": lease, "record": record, "spec": spec, "data": data, "done": False,
                        "progress": JobProgress(worker.queue, heartbeat, worker.event_s)})
    if not members:
        return finished
    for m in members:
        worker.queue.event(m["lease"], "message", f"training jointly with {len(members) - 1} other jobs: "
                           + ", ".join(o["record"].task for o in members if o is not m))
    first = members[0]["spec"]
    tm = load_model(first.backbone, 2, ProblemType.SINGLE_LABEL, first.seed)
    result = train_joint(tm, [JointTask(m["record"].task, m["data"]) for m in members], epochs=first.epochs,
                         lr=first.lr, batch_size=first.batch_size, max_length=first.max_length,
                         pooling=default_pooling(first.backbone), seed=first.seed, device=first.device,
                         observer=FanOut(worker, members))
    tasks, jobs = [m["record"].task for m in members], [m["lease"].job_id for m in members]
    for k, m in enumerate(members):
        if m["done"]:
            continue
        lease, record, bias_set = m["lease"], m["record"], result["bias_sets"][k]
        m["progress"].heartbeat.flush()  # the last metrics reach the record before it ends
        worker.queue.put_artifact(lease, "report.json", json.dumps(_report(record, k, tasks, jobs, result, bias_set),
                                                                   indent=2).encode())
        summary = {"validation": bias_set.meta.training["validation"], "test": None,
                   "best_epoch": bias_set.meta.training["best_epoch"], "learning_rate": first.lr,
                   "joint": {"tasks": tasks, "jobs": jobs}}
        finished.append(worker.guarded(lease, worker._finish_trained, lease, record, JobConfig.parse(record.config),
                                       bias_set, tm.spec, _loader(m["data"]), summary, m["progress"]))
    return finished

