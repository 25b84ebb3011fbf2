"""What one server runs: the services its lifespan builds from the settings, and stops.

``start_services`` loads the backbone, opens the store, builds the catalog (the tasks'
life cycle) and the serving path (tokenizers, batcher, admission); the HTTP app factory
(server/http/app.py) and the Ray replica both call it.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import partial

from bias_store.format import BiasSet
from bias_store.open_store import open_store
from bias_store.store import BiasStore
from engine import Backbone, Engine, load_backbone
from engine.runners import onnx_options
from server.catalog.catalog import TaskCatalog
from server.catalog.mutations import TaskMutations
from server.catalog.preload import preload
from server.catalog.sync import StoreSync
from server.catalog.validation import UploadValidator, fetch
from server.catalog.warm_up import WarmUp
from server.process.budget import host_tier, resident_slots
from server.process.metrics import Metrics
from server.process.settings import Settings, available_cores
from server.process.train_workers import TrainWorkers, worker_command
from server.serving.admission import TokenBudget
from server.serving.batcher import Batcher
from server.serving.predictor import Predictor
from server.serving.tokenize import Tokenizers
from training.jobs.queue import JobQueue

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the lifespan builds; kept on ``app.state.services`` while serving."""

    settings: Settings
    metrics: Metrics
    engine: Engine
    store: BiasStore
    catalog: TaskCatalog  # every stored task and the life cycle of the touched ones: the one acquire
    sync: StoreSync  # follows the store's change log into the catalog
    mutations: TaskMutations
    predictor: Predictor  # the predict path: admission, tokenizers, batcher
    warm_up: WarmUp | None = None
    jobs: JobQueue | None = None  # training jobs, queued in the store (POST /jobs)
    trainers: TrainWorkers | None = None  # the `bitfit jobs worker` processes beside this server


class StartupError(RuntimeError):
    """The backbone, store or a preload file could not be set up (the server exits)."""


def start_services(settings: Settings, metrics: Metrics, backbone: Backbone | None = None) -> Services:
    """Load the backbone (unless given), put preloads, read the store's catalog, start the workers."""
    if backbone is None:
        backbone = load_backbone(settings.backbone, settings.device, settings.dtype)
    validator = UploadValidator(backbone.spec, settings.max_upload_bytes, metrics)
    store = open_store(
        settings.store, settings.keep_versions, settings.s3_endpoint_url,
        s3_connect_timeout_s=settings.s3_connect_timeout_s, s3_read_timeout_s=settings.s3_read_timeout_s,
        s3_max_attempts=settings.s3_max_attempts, cache_dir=settings.cache_dir, cache_bytes=settings.cache_bytes,
    )
    preload(store, validator, settings.preload, settings.preload_policy)
    # compile is a PyTorch feature: with it, "auto" stays on PyTorch.
    backend = "torch" if settings.compile != "off" and settings.backend == "auto" else settings.backend
    onnx = onnx_options(
        backend, backbone.device, settings.resolved_onnx_cache(), settings.quantize,
        threads=settings.resolved_onnx_threads(available_cores()), spin=settings.onnx_spin,
        pack=settings.onnx_pack,
    )
    catalog = store.catalog()  # names, versions, sha256: no bias set is read for it
    slots = resident_slots(settings, backbone)
    engine = Engine(
        backbone, capacity=slots, grow=False, split_overhead_tokens=settings.split_overhead_tokens,
        compile_mode=settings.compile, onnx=onnx,
    )
    engine.warm_up(settings.max_batch_rows)  # compiles now (when compiling), not on a request
    tasks = TaskCatalog(engine, partial(fetch, store, validator), partial(_read_kept, store, validator), settings.max_pinned_versions,
                        host_tier(settings, backbone, slots))
    tasks.on_drop = metrics.forget_task  # a deleted task's metric label slot is freed
    metrics.track_catalog(tasks)
    sync = StoreSync(store, tasks, settings.sync_interval_s, eager=not settings.lazy(len(catalog[1])),
                     max_waiters=settings.max_generation_waiters)
    sync.start(catalog)
    metrics.track_sync(sync)
    warm_up = None
    if not sync.eager and settings.warm_up_tasks:
        warm_up = WarmUp(tasks, settings.warm_up_tasks)
        warm_up.start()
    if settings.predict_api_keys and not settings.api_keys:
        log.warning("BITFIT_PREDICT_API_KEYS is set without BITFIT_API_KEYS: task changes over HTTP are refused")
    log.info("resident budget: %d task slots of %d bytes each", slots, engine.row_bytes)
    budget = TokenBudget(settings.max_inflight_tokens, settings.retry_after_s, metrics.rejected.labels("budget").inc)
    metrics.track_budget(budget)
    if settings.inference_workers > 1 and not engine.parallel_forwards:
        log.warning("BITFIT_INFERENCE_WORKERS=%d is for ONNX Runtime; the %s backend runs one forward at a time",
                    settings.inference_workers, engine.backend)
    batcher = Batcher(engine, metrics, settings, settings.resolved_inference_workers(engine.parallel_forwards))
    predictor = Predictor(engine, tasks, Tokenizers(engine, settings), batcher, budget, settings)
    services = Services(settings, metrics, engine, store, tasks, sync, TaskMutations(store, sync, validator), predictor, warm_up)
    services.jobs = JobQueue.for_store(store)
    services.trainers = start_trainers(settings)
    return services


# What a `bitfit jobs worker` imports beyond serving's packages: its plots and its reader of Parquet.
TRAINER_NEEDS = ("matplotlib", "pyarrow")


def start_trainers(settings: Settings) -> TrainWorkers | None:
    """``--train-workers`` worker processes on this server's store (server/process/train_workers.py)."""
    if settings.train_workers == 0:
        return None
    if missing := [m for m in TRAINER_NEEDS if importlib.util.find_spec(m) is None]:
        # An install without the train extra (the server image; `pip install bitfit-serve`):
        # jobs still queue in the store, for a `bitfit jobs worker` where training is installed.
        log.warning("no training workers started: this install lacks %s (pip install 'bitfit-serve[train]'); "
                    "POST /jobs queues jobs for a `bitfit jobs worker` elsewhere", ", ".join(missing))
        return None
    flags = ["--lease", f"{settings.train_lease_s:g}", "--joint", str(settings.train_joint)]
    command = worker_command(settings.store, settings.s3_endpoint_url, settings.backbone, flags)
    trainers = TrainWorkers(command, settings.train_workers, settings.train_worker_nice, settings.train_worker_threads,
                            idle=settings.train_worker_priority == "idle")
    trainers.start()
    log.info("%d training worker(s) at nice %d on %s", settings.train_workers, settings.train_worker_nice, settings.store)
    return trainers


def _read_kept(store: BiasStore, validator: UploadValidator, name: str, version: int) -> tuple[BiasSet, str]:
    """A kept version's bias set and sha256 (stored files passed validation on put; parsed once here)."""
    record, data = store.get(name, version)  # VersionNotFound (404) names the kept versions
    return validator.stored(data, name), record.sha256


def stop_services(services: Services) -> None:
    """Finish queued work, then stop loading and watching the store."""
    if services.trainers is not None:
        services.trainers.close()
    services.predictor.close(timeout=services.settings.graceful_timeout_s)
    if services.warm_up is not None:
        services.warm_up.close()
    services.sync.stop()
    services.catalog.close()
