"""What routes depend on: the running services, as one small overridable dependency."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from bias_store.store import BiasStore
from engine import Engine
from server.batcher import Batcher
from server.errors import NotReady
from server.metrics import Metrics
from server.mutations import TaskMutations
from server.settings import Settings
from server.sync import StoreSync


@dataclass
class Services:
    """Everything the lifespan builds; kept on ``app.state.services`` while serving."""

    settings: Settings
    metrics: Metrics
    engine: Engine
    store: BiasStore
    sync: StoreSync
    mutations: TaskMutations
    batcher: Batcher


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency on its thread pool, a thread
    # hop per request for what is an attribute read.
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise NotReady("the server is starting or stopping", {"Retry-After": "1"})
    return services
