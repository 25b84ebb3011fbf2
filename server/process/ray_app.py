"""Ray Serve: N replicas of the same server, each a whole ``create_app`` (engine + batcher).

Every replica loads the backbone, follows the shared bias store's change log and runs
the project's own cross-task batcher, so any replica serves any task and a batch mixes
tasks. Ray only routes HTTP requests to replicas; ``@serve.batch`` and
``serve.multiplexed`` are not used on purpose: they would put one model id per batch.

    serve run deploy/ray/serve_cpu.yaml            # or: serve deploy ...
    serve run server.process.ray_app:build store=s3://bucket/prefix

Ray is an optional extra (``pip install .[ray]``); nothing else in the server imports it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import serve
from ray.serve import Application

from server.http.app import create_app
from server.process.settings import Settings

log = logging.getLogger(__name__)


# Ray's default of 5 requests in flight per replica would starve the batcher: a batch
# mixes the tasks of many concurrent requests, so a replica takes many at once.
@serve.deployment(name="bitfit", ray_actor_options={"num_cpus": 1}, max_ongoing_requests=256)
@serve.ingress()  # the app is built in each replica, by __serve_build_asgi_app__
class BitfitReplica:
    def __init__(self, settings: dict[str, Any]) -> None:
        context = serve.get_replica_context()
        # Settings() also reads BITFIT_* variables of the replica's runtime_env.
        # No training workers inside replicas (each would start its own): run them as the
        # deployment's workers instead (docs/TRAINING.md); POST /jobs still queues jobs.
        self.settings = Settings(**{"replica_name": f"{context.deployment}#{context.replica_id.unique_id}", "train_workers": 0,
                                    **settings})
        _set_torch_threads(self.settings)

    def __serve_build_asgi_app__(self):
        return create_app(self.settings)


def _set_torch_threads(settings: Settings) -> None:
    """As `bitfit serve` does, from the CPUs Ray gave this replica (not the machine's)."""
    import ray
    import torch

    # The replica's event loop shares these CPUs with Ray's own threads, but a replica's
    # num_cpus is what it may use: one torch thread per assigned CPU.
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0)) or os.cpu_count() or 1
    torch.set_num_threads(settings.torch_threads or max(1, cpus))
    log.info("replica %s: torch uses %d threads", settings.replica_name, torch.get_num_threads())


def build(args: dict[str, Any]) -> Application:
    """The Serve application; ``args`` are Settings fields (``store``, ``backbone``, ...)."""
    return BitfitReplica.bind(dict(args))
