"""A fleet of training workers as Ray actors: each one a ``JobWorker`` on the shared store's queue.

``python -m training.jobs.ray_fleet --store s3://bucket/prefix --workers 4 [--gpus-per-worker 1]``
on a Ray cluster (deploy/ray/train_fleet.sh submits it as a Ray job). The actors spread over
the nodes; an actor whose node dies is restarted elsewhere by Ray, and the job it was
training is re-run by whichever worker claims it when its lease expires: the queue, not
Ray, is what keeps a job from being lost or published twice.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time

log = logging.getLogger(__name__)


class TrainingWorker:
    """One Ray actor: a JobWorker claiming, training and publishing until told to stop."""

    def __init__(self, store: str, s3_endpoint_url: str | None = None, lease_s: float = 30.0,
                 backbone: str | None = None, device: str = "auto", idle_sleep: float = 1.0) -> None:
        import ray
        import torch

        from bias_store.open_store import open_store
        from engine.backbone import resolve_device
        from training.jobs.queue import JobQueue
        from training.jobs.worker import JobWorker

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        cpus = int(context.get_assigned_resources().get("CPU", 0)) or os.cpu_count() or 1
        torch.set_num_threads(max(1, cpus))  # the CPUs Ray gave this actor, not the machine's
        opened = open_store(store, s3_endpoint_url=s3_endpoint_url)
        worker_id = f"ray-{self.node_id[:12]}-{os.getpid()}"
        self.worker = JobWorker(JobQueue.for_store(opened), opened, worker_id=worker_id, lease_s=lease_s,
                                device=str(resolve_device(device)), backbone=backbone)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.worker.run_forever, args=(self.stop_event, idle_sleep), daemon=True)
        self.thread.start()

    def describe(self) -> dict:
        return {"worker": self.worker.worker_id, "node": self.node_id, "alive": self.thread.is_alive()}

    def stop(self) -> None:
        """Stop claiming; a job in training finishes first."""
        self.stop_event.set()
        self.thread.join()


def start_fleet(workers: int, store: str, s3_endpoint_url: str | None = None, cpus_per_worker: float = 1,
                gpus_per_worker: float = 0, lease_s: float = 30.0, backbone: str | None = None) -> list:
    """``workers`` actors spread over the cluster's nodes (the caller has run ``ray.init``)."""
    import ray

    actor = ray.remote(TrainingWorker).options(
        num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, scheduling_strategy="SPREAD",
        max_restarts=-1,  # a worker whose node died comes back on another node
        max_concurrency=2,  # describe() answers while the constructor's thread trains
    )
    device = "cuda" if gpus_per_worker else "cpu"
    return [actor.remote(store, s3_endpoint_url, lease_s, backbone, device) for _ in range(workers)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.jobs.ray_fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="auto", help="the Ray cluster (default: the one this runs in)")
    parser.add_argument("--store", required=True, help="the shared bias store: s3://bucket/prefix (or a shared folder)")
    parser.add_argument("--s3-endpoint-url", default=os.environ.get("BITFIT_S3_ENDPOINT_URL"))
    parser.add_argument("--workers", type=int, default=2, help="training actors to start")
    parser.add_argument("--cpus-per-worker", type=float, default=2)
    parser.add_argument("--gpus-per-worker", type=float, default=0, help="1 trains each worker's jobs on a GPU")
    parser.add_argument("--lease", type=float, default=30.0, help="seconds a silent worker keeps its job")
    parser.add_argument("--backbone", help="the backbone jobs train on (default: the packaged MiniLM)")
    args = parser.parse_args(argv)
    import ray

    logging.basicConfig(level=logging.INFO)
    ray.init(address=args.address)
    fleet = start_fleet(args.workers, args.store, args.s3_endpoint_url, args.cpus_per_worker, args.gpus_per_worker,
                        args.lease, args.backbone)
    for info in ray.get([w.describe.remote() for w in fleet]):
        log.info("training worker %s on node %s", info["worker"], info["node"])
    try:
        while True:  # the actors train; this driver keeps them alive
            time.sleep(60)
    except KeyboardInterrupt:
        ray.get([w.stop.remote() for w in fleet])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
