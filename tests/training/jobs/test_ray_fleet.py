"""The training fleet on a real 2-node Ray cluster with a SeaweedFS store: 4 jobs, both nodes
train, all four published once; the second node dies mid-job and its job is re-run on the first."""

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


def test_four_jobs_over_two_nodes_and_a_node_lost_mid_job(seaweedfs):
    from ray.cluster_utils import Cluster

    from training.jobs.ray_fleet import start_fleet

    url = f"s3://{BUCKET}/fleet-{uuid.uuid4().hex[:8]}"
    store = open_store(url, s3_endpoint_url=seaweedfs.endpoint)
    queue = JobQueue.for_store(store)
    jobs = [submit(queue, f"fleet{i}", n=96, max_length=16).id for i in range(4)]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    env = {**CREDENTIALS, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    ray.init(address=cluster.address, runtime_env={"env_vars": env}, log_to_driver=False)
    try:
        fleet = start_fleet(2, url, seaweedfs.endpoint, cpus_per_worker=1, lease_s=4)
        infos = ray.get([w.describe.remote() for w in fleet], timeout=120)
        nodes = {info["node"] for info in infos}
        assert len(nodes) == 2  # one actor per node
        doomed = next(i["worker"] for i in infos if i["node"] == second.node_id)

        def doomed_mid_second_job():
            records = [queue.get(j) for j in jobs]
            finished = [r for r in records if r.status == "succeeded" and r.worker == doomed]
            running = [r for r in records if r.status == "running" and r.worker == doomed and r.progress.get("step")]
            return finished and running and running[0]

        victim = wait_for(doomed_mid_second_job, 240, "the second node's worker to publish one job and start another",
                          every=0.2)
        cluster.remove_node(second)  # the node dies mid-job
        wait_for(lambda: all(queue.get(j).status == "succeeded" for j in jobs), 240, "all four jobs", every=0.5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    records = {j: queue.get(j) for j in jobs}
    assert {r.worker.split("-")[1] for r in records.values()} == {n[:12] for n in nodes}  # both nodes published
    again = records[victim.id]
    assert again.attempts == 2 and again.worker != doomed
    for i, job_id in enumerate(jobs):
        stored = store.get(f"fleet{i}")[0]
        assert stored.versions == (1,) and stored.meta.training["job"]["id"] == job_id  # published exactly once
