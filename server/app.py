"""The app factory: ``create_app(settings)`` wires routers; its lifespan builds the services.

Nothing lives at module level: the backbone, engine, store, sync watcher, batcher and
metrics registry belong to one app (``app.state``), so tests can run several apps in one
process.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from bias_store.open_store import open_store
from engine import Backbone, Engine, load_backbone
from engine.ort_encoder import onnx_options
from server.admission import TokenBudget
from server.batcher import Batcher
from server.deps import Services
from server.errors import install_error_handlers
from server.json_bytes import OrjsonResponse
from server.loading import TaskLoader
from server.metrics import Metrics
from server.middleware import ReplicaHeader, RequestGuard
from server.mutations import TaskMutations
from server.openapi import declare_limits
from server.preload import preload
from server.request_id import RequestIds
from server.routes import access, health, metrics, oip, predict, tasks
from server.settings import Settings, available_cores
from server.sync import StoreSync
from server.tokenize import Tokenizers
from server.validation import UploadValidator
from server.versions import KeptVersions

log = logging.getLogger(__name__)

DESCRIPTION = """Serve many BitFit text-classification tasks on one frozen encoder.

Each task is a small *bias set* (the encoder's bias terms plus a classifier head). Requests
for any mix of tasks share every forward pass. Tasks are uploaded, replaced, rolled back
and deleted at run time; a request always finishes with the version it started with.

Every error answer is `{"error": {"code": ..., "message": ...}}`.
"""


class StartupError(RuntimeError):
    """The backbone, store or a preload file could not be set up (the server exits)."""


def start_services(settings: Settings, metrics: Metrics, backbone: Backbone | None = None) -> Services:
    """Load the backbone (unless given), put preloads, load the store, start the workers."""
    if backbone is None:
        backbone = load_backbone(settings.backbone, settings.device, settings.dtype)
    validator = UploadValidator(backbone.spec, settings.max_upload_bytes, metrics)
    store = open_store(settings.store, settings.keep_versions, settings.s3_endpoint_url)
    preload(store, validator, settings.preload, settings.preload_policy)
    # Room for every stored task up front, so start-up does not regrow the table many times;
    # later uploads grow it by 6.25% steps.
    # compile is a PyTorch feature: with it, "auto" stays on PyTorch.
    backend = "torch" if settings.compile != "off" and settings.backend == "auto" else settings.backend
    onnx = onnx_options(
        backend, backbone.device, settings.resolved_onnx_cache(), settings.quantize,
        threads=settings.resolved_torch_threads(available_cores()),
    )
    catalog = store.catalog()  # names, versions, sha256: no bias set is read for it
    lazy = settings.lazy(len(catalog[1]))
    engine = Engine(
        backbone, capacity=min(len(catalog[1]), settings.warm_up_tasks) if lazy else len(catalog[1]),
        split_overhead_tokens=settings.split_overhead_tokens, compile_mode=settings.compile, onnx=onnx,
    )
    engine.warm_up(settings.max_batch_rows)  # compiles now (when compiling), not on a request
    sync = StoreSync(store, engine, validator, settings.sync_interval_s, lazy=lazy)
    sync.on_drop = metrics.forget_task  # a deleted task's metric label slot is freed
    sync.start(catalog)
    loader = TaskLoader(sync, engine)
    if lazy and settings.warm_up_tasks:
        loader.start_warm_up(settings.warm_up_tasks)
    metrics.track_tasks(lambda: len(engine.tasks()))
    if settings.predict_api_keys and not settings.api_keys:
        log.warning("BITFIT_PREDICT_API_KEYS is set without BITFIT_API_KEYS: task changes over HTTP are refused")
    # Stored files passed validation on put; this parses them again for the kept-version slots.
    versions = KeptVersions(loader, store, lambda data, name: validator(data, name).bias_set, settings.max_pinned_versions)
    return Services(
        settings, metrics, engine, store, sync, loader, TaskMutations(store, sync, validator),
        Tokenizers(engine, settings), Batcher(engine, metrics, settings),
        TokenBudget(settings.max_inflight_tokens, settings.retry_after_s, metrics.rejected.labels("budget").inc), versions,
    )


def stop_services(services: Services) -> None:
    """Finish queued work, then stop watching the store."""
    services.batcher.close(timeout=services.settings.graceful_timeout_s)
    services.versions.clear()
    services.tokenizers.close()
    services.loader.close()
    services.sync.stop()


def create_app(settings: Settings, *, backbone: Backbone | None = None) -> FastAPI:
    """Build the app. ``backbone`` lets tests share one already-loaded backbone."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            services = await run_in_threadpool(start_services, settings, app.state.metrics, backbone)
        except Exception as exc:
            # One clear line for the operator instead of a deep transformers traceback.
            raise StartupError(f"start-up failed: {type(exc).__name__}: {exc}") from None
        app.state.services = services
        engine = services.engine
        log.info("ready: %d of %d tasks loaded (%s) on %s (%s)", len(engine.tasks()), len(services.sync.catalog),
                 "lazy" if services.sync.lazy else "eager", engine.backbone.device, engine.backend)
        try:
            yield
        finally:
            app.state.services = None
            await run_in_threadpool(stop_services, services)

    # orjson encodes the answers (predict answers are most of the bytes the server writes).
    app = FastAPI(
        title="BitFit multi-task inference server", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    app.state.metrics = Metrics(settings.metrics_max_tasks)
    app.state.services = None
    for router in (predict.router, tasks.router, health.router, metrics.router, access.router, oip.open_router, oip.router):
        app.include_router(router)
    declare_limits(app, settings)
    app.add_middleware(RequestGuard, settings=settings)
    app.add_middleware(ReplicaHeader, name=settings.replica_name or f"{socket.gethostname()}:{os.getpid()}")
    install_error_handlers(app)  # its catch-all wraps every middleware above
    app.add_middleware(RequestIds)  # outermost: every answer and log line has the id
    return app
