"""A job's publish step: the policy (always | if_better | never) and exactly-once publishing.

The job id goes into the published version's metadata (``training.job.id``). Before it
publishes, an attempt looks for a version carrying its job id: an earlier attempt that
stored one and died before recording it is not published twice.
"""

from __future__ import annotations

import logging

from bias_store.errors import TaskNotFound
from bias_store.format import BiasSet, dumps, loads
from bias_store.store import BiasStore
from bias_store.validate import validate_upload
from training.jobs.compare import compare
from training.jobs.records import Lease

log = logging.getLogger(__name__)


def job_version(store: BiasStore, task: str, job_id: str) -> int | None:
    """The kept version of ``task`` that job ``job_id`` published, if any."""
    try:
        record = store.get(task)[0]
    except TaskNotFound:
        return None
    for version in reversed(record.versions):
        meta = record.meta if version == record.version else store.get(task, version)[0].meta
        if (meta.training.get("job") or {}).get("id") == job_id:
            return version
    return None


def current_set(store: BiasStore, task: str) -> tuple[BiasSet | None, int | None]:
    try:
        record, data = store.get(task)
    except TaskNotFound:
        return None, None
    return loads(data), record.version


def decide(policy: str, engine_factory, new: BiasSet, store: BiasStore, data_factory) -> dict:
    """Whether to publish, why, and (if_better) both scores."""
    if policy == "never":
        return {"publish": False, "policy": policy, "reason": "publish: never (the set is in the job's artifacts)"}
    if policy == "always":
        return {"publish": True, "policy": policy, "reason": "publish: always"}
    current, version = current_set(store, new.meta.task)
    if current is None:
        return {"publish": True, "policy": policy, "reason": "new task: nothing to compare with", "scores": {}}
    return {"policy": policy, **compare(engine_factory(), new, current, version, data_factory())}


def publish_once(store: BiasStore, queue, lease: Lease, bias_set: BiasSet, spec, decision: dict) -> tuple[int, int, bool]:
    """Store the set as the task's next version unless this job already has one: (version, the
    change-log generation that has it, newly stored)."""
    queue.mark_publishing(lease)  # LeaseLost here: another worker owns the job now, publish nothing
    task = bias_set.meta.task
    existing = job_version(store, task, lease.job_id)
    if existing is not None:
        log.info("job %s: %s v%d is already this job's (an earlier attempt published it)", lease.job_id, task, existing)
        return existing, store.generation(), False
    bias_set.meta.training["job"] = {
        "id": lease.job_id, "attempt": lease.attempt, "worker": lease.worker, "policy": decision.get("policy"),
        "decision": decision.get("reason"), "scores": decision.get("scores") or {},
    }
    record = store.put(validate_upload(dumps(bias_set), spec))
    return record.version, record.generation, True
