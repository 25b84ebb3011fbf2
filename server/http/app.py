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

from engine import Backbone
from server.http.access_log import AccessLog
from server.http.auth import accepted_keys
from server.http.errors import install_error_handlers
from server.http.fast_predict import FastPredict
from server.http.json_bytes import OrjsonResponse
from server.http.middleware import ReplicaHeader, RequestGuard
from server.http.openapi import declare_limits
from server.http.request_id import RequestIds
from server.http.routes import access, files, health, hf_models, job_events, jobs, metrics, oip, oip_extra, predict, stats, tasks
from server.http.routes.console import add_console
from server.http.routes.docs import add_docs
from server.http.tenancy import open_keys_file
from server.process.metrics import Metrics
from server.process.services import StartupError, start_services, stop_services
from server.process.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """Serve many BitFit text-classification tasks on one frozen encoder.

Each task is a small *bias set* (the encoder's bias terms plus a classifier head). Requests
for any mix of tasks share every forward pass. Tasks are uploaded, replaced, rolled back
and deleted at run time; a request always finishes with the version it started with.

Every error answer is `{"error": {"code": ..., "message": ...}}`.
"""


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
        log.info("ready: %d of %d tasks resident (%s, %d slots) on %s (%s)", services.catalog.resident,
                 len(services.catalog.stored), services.sync.load_mode, engine.capacity, engine.backbone.device, engine.backend)
        try:
            yield
        finally:
            app.state.services = None
            await run_in_threadpool(stop_services, services)

    # orjson encodes the answers (predict answers are most of the bytes the server writes).
    app = FastAPI(
        title="BitFit multi-task inference server", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
        default_response_class=OrjsonResponse, docs_url=None, redoc_url=None,  # /docs: local assets (add_docs)
        # FastAPI's own OpenTelemetry server span per request (it continues a W3C traceparent)
        # when the otel extra is installed; server/serving/spans.py adds tokenize, queue_wait,
        # forward under it. Metrics stay Prometheus', logs the `bitfit` handler's.
        telemetry={"tracing": True, "operation_spans": False, "metrics": False, "logs": False},
        # No 307 to the same path with(out) a trailing slash: Starlette builds that URL from
        # the request's Host header, before any auth. A wrong path is a JSON 404/405.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = Metrics(settings.metrics_max_tasks)
    app.state.services = None
    app.state.keys = open_keys_file(settings)
    app.state.event_streams = job_events.EventStreams(settings.max_event_streams)
    # oip_extra before oip: its /v2/models/stats must not be read as the task "stats".
    routers = (predict.router, hf_models.router, tasks.router, jobs.router, job_events.router, files.router, health.router,
               metrics.router, stats.router, access.router, oip.open_router, oip_extra.router, oip_extra.control, oip.router)
    for router in routers:
        app.include_router(router)
    add_docs(app)
    if settings.console_enabled():
        add_console(app)
    declare_limits(app, settings)
    # Innermost: the hot request's fast lane, past the guard, the replica header, the catch-all,
    # the access log and the request id like every request (server/http/fast_predict.py).
    app.add_middleware(FastPredict, settings=settings, open_server=accepted_keys(settings, "reader", app.state.keys is not None) is None)
    app.add_middleware(RequestGuard, settings=settings, metrics=app.state.metrics)
    app.add_middleware(ReplicaHeader, name=settings.replica_name or f"{socket.gethostname()}:{os.getpid()}")
    install_error_handlers(app)  # its catch-all wraps every middleware above
    if settings.access_log:
        app.add_middleware(AccessLog)  # sees the status the catch-all answered
    app.add_middleware(RequestIds)  # outermost: every answer and log line has the id
    return app
