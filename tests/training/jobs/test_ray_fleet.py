"""The training fleet on a real 2-node Ray cluster with a SeaweedFS store: 4 jobs, both nodes
train, all four published once; then the second node dies mid-job and that job is re-run on
the first node and published once."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from bias_store.open_store import open_store
from tests.seaweedfs import BUCKET, CREDENTIALS
from tests.training.jobs.support import submit, wait_for
from training.jobs.queue import JobQueue

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.minilm]
ROOT = Path(__file__).resolve().parents[3]


def all_succeeded(queue: JobQueue, jobs: list[str]) -> bool:
    records = [queue.get(j) for j in jobs]
    failed = [r for r in records if r.status in ("failed", "cancelled")]
    assert not failed, [(r.id, r.status, r.error) for r in failed]
    return all(r.status == "succeeded" for r in records)


def test_four_jobs_over_two_nodes_and_a_node_lost_mid_job(seaweedfs, monkeypatch):
    from ray.cluster_utils import Cluster

    from training.jobs.ray_fleet import start_fleet

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    url = f"s3://{BUCKET}/fleet-{uuid.uuid4().hex[:8]}"
    store = open_store(url, s3_endpoint_url=seaweedfs.endpoint)
    queue = JobQueue.for_store(store)
    first_wave = [submit(queue, f"fleet{i}", n=64, max_length=16).id for i in range(4)]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    env = {**CREDENTIALS, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    ray.init(address=cluster.address, runtime_env={"env_vars": env}, log_to_driver=False)
    try:
        fleet = start_fleet(2, url, seaweedfs.endpoint, cpus_per_worker=1, lease_s=10)
        infos = ray.get([w.describe.remote() for w in fleet], timeout=120)
        nodes = {info["node"][:12] for info in infos}
        assert len(nodes) == 2  # one actor per node
        doomed = next(i["worker"] for i in infos if i["node"] == second.node_id)
        wait_for(lambda: all_succeeded(queue, first_wave), 300, "the first four jobs", every=0.5)
        publishers = {queue.get(j).worker.split("-")[1] for j in first_wave}
        assert publishers == nodes  # both nodes trained and published

        # Two idle workers, three jobs of ~200 steps each: the second node's worker surely claims
        # one and is still training it when the record's progress is written (at most every 2 s;
        # a 16-step job could end before its first progress write). The second node dies mid-job.
        second_wave = [submit(queue, f"late{i}", n=128, max_length=16, epochs=12).id for i in range(3)]

        def doomed_training():
            records = [queue.get(j) for j in second_wave]
            return next((r for r in records if r.status == "running" and r.worker == doomed
                         and r.progress.get("step")), None)

        victim = wait_for(doomed_training, 120, "the second node's worker to train a job of the second wave", every=0.1)
        cluster.remove_node(second)
        wait_for(lambda: all_succeeded(queue, second_wave), 240, "the second wave, the lost job re-run", every=0.5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    again = queue.get(victim.id)
    assert again.attempts == 2 and again.worker != doomed
    assert any("lease of worker " + doomed in e["message"] for e in queue.events(victim.id))
    for job_id in first_wave + second_wave:
        record = queue.get(job_id)
        stored = store.get(record.task)[0]
        assert stored.versions == (1,) and stored.meta.training["job"]["id"] == job_id  # published exactly once
