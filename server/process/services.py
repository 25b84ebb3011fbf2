"""What one server runs: the services its lifespan builds from the settings, and stops.

``start_services`` loads the backbone, opens the store, builds the catalog (the tasks'
life cycle) and the serving path (tokenizers, batcher, admission); the HTTP app factory
(server/http/app.py) and the Ray replica both call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bias_store.open_store import open_store
from bias_store.store import BiasStore
from engine import Backbone, Engine, load_backbone
from engine.runners import onnx_options
from server.catalog.loading import TaskLoader
from server.catalog.mutations import TaskMutations
from server.catalog.preload import preload
from server.catalog.sync import StoreSync
from server.catalog.validation import UploadValidator
from server.catalog.versions import KeptVersions
from server.process.metrics import Metrics
from server.process.settings import Settings, available_cores
from server.serving.admission import TokenBudget
from server.serving.batcher import Batcher
from server.serving.tokenize import Tokenizers

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the lifespan builds; kept on ``app.state.services`` while serving."""

    settings: Settings
    metrics: Metrics
    engine: Engine
    store: BiasStore
    sync: StoreSync
    loader: TaskLoader  # a task's handle for a request, loaded on first use when lazy
    mutations: TaskMutations
    tokenizers: Tokenizers
    batcher: Batcher
    budget: TokenBudget  # admission: tokens of work in flight
    versions: KeptVersions  # kept versions other than the current ones, served on request


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


