"""Server settings: flags and ``BITFIT_*`` environment variables, read once and passed in.

Nothing else in the server reads ``os.environ``; ``create_app(settings)`` gets this object
and keeps it on ``app.state.settings``. docs/OPERATIONS.md lists every variable.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
ENV_PREFIX = "BITFIT_"


def env_name(field: str) -> str:
    """The environment variable of a setting, for messages that name the limit hit."""
    return ENV_PREFIX + field.upper()


def _split_list(value: object) -> object:
    """Env lists may be JSON (``["a","b"]``) or comma-separated (``a,b``)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def describe_error(exc: ValidationError, flags: tuple[str, ...] = ()) -> str:
    """One line per problem, naming the flag (of ``flags``) and the variable; never the
    value (it may be a secret)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        field = ".".join(str(part) for part in err.get("loc", ()))
        where = f"BITFIT_{field.upper()}" if field else "settings"
        if field in flags:
            where = f"--{field.replace('_', '-')} / {where}"
        lines.append(f"  {where}: {err.get('msg', 'invalid')}")
    return "\n".join(lines)


def loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Settings(BaseSettings):
    """Every setting is a ``BITFIT_*`` variable and a ``bitfit serve`` flag: the flags, their
    help and their defaults are generated from these fields (server/process/serve_cli.py)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # -- where and what to serve ----------------------------------------------------------
    host: str = Field("127.0.0.1", description="interface to bind")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    store: str = Field("store", description="bias store: a folder (created if missing), file://... or s3://bucket/prefix")
    # Credentials and region come the standard AWS way (AWS_* variables, a profile, an IAM role).
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint of an s3:// store that is not AWS (MinIO, SeaweedFS, ...)")
    # A frozen endpoint answers 503 after about attempts x (connect or read timeout), not 60 s.
    s3_connect_timeout_s: float = Field(2.0, gt=0, description="seconds to connect to the S3 endpoint, per attempt")
    s3_read_timeout_s: float = Field(10.0, gt=0, description="seconds an S3 call may wait for its answer, per attempt")
    s3_max_attempts: int = Field(2, ge=1, description="attempts per S3 call, the first included")
    # Version files are immutable, so a local copy (checked by its sha256) saves a GET.
    cache_dir: Path | None = Field(
        None, description="an s3:// store's local disk tier of version files (least recently used out); unset: none")
    cache_bytes: int = Field(1 << 30, ge=1, description="the most bytes --cache-dir holds")
    backbone: str | None = Field(None, description="backbone path or id; unset: the packaged all-MiniLM-L6-v2")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="backbone dtype (float16/bfloat16 need a GPU)")
    # One graph per length bucket, with CUDA graphs on CUDA: minutes of start-up on a CPU.
    compile: Literal["off", "default", "max-autotune"] = Field(
        "off", description="torch.compile the forward, warmed up at start-up (engine/compiled.py)")
    # docs/BENCHMARKS.md has the figures.
    backend: Literal["torch", "onnxruntime", "auto"] = Field(
        "auto", description="who runs the encoder; auto: ONNX Runtime on the CPU when installed (the onnx extra), else PyTorch")
    quantize: Literal["none", "int8"] = Field(
        "none", description="int8: ONNX Runtime dynamic quantization of the encoder's MatMuls (onnxruntime only)")
    # One folder per backbone fingerprint and exporter version.
    onnx_cache: Path | None = Field(None, description="where the exported ONNX graph is cached; unset: ~/.cache/bitfit/onnx")
    preload: Annotated[list[Path], NoDecode] = Field(
        [], description="bias-set files put into the store at start-up (the variable: comma-separated)")
    # "if_absent" never reverts an operator's later upload on a restart.
    preload_policy: Literal["if_absent", "replace"] = Field(
        "if_absent", description="if_absent: store a preload only when the store lacks its task; replace: also when its bytes "
        "differ from the current version")
    keep_versions: int = Field(5, ge=1, description="versions kept per task (rollback and ?version=N)")
    # Eager start-up grows with the store (~4 ms a task); lazy is ready once the catalog is
    # read and a task's first request waits for its load (~4 ms). docs/SCALING.md.
    load: Literal["auto", "eager", "lazy"] = Field(
        "auto", description="read and register every stored task at start-up (eager) or on first use (lazy); auto: lazy "
        "above --lazy-above-tasks tasks")
    lazy_above_tasks: int = Field(1000, ge=0, description="with --load auto: the store size above which loading is lazy")
    # The bias table starts with room for them; they never hold up requests.
    warm_up_tasks: int = Field(
        1000, ge=0, description="when lazy: tasks loaded in the background after start-up, most recently changed first; 0 = none")
    # Each costs one bias-table row and its head.
    max_pinned_versions: int = Field(
        8, ge=0, description="kept versions other than the current ones that ?version=N requests keep loaded at a time")
    # A load that finds no slot free evicts the least recently used task no request holds; it
    # loads again on its next use (docs/SCALING.md "Many tasks").
    max_resident_tasks: int = Field(
        0, ge=0, description="task slots of the bias table, current and kept versions alike; 0: from --resident-bytes")
    resident_bytes: int = Field(
        0, ge=0, description="the resident budget in bytes; 0 (and --max-resident-tasks 0): a quarter of the available memory")
    # Validated sets kept in host memory under the slots (pinned on CUDA), so an evicted task
    # comes back without a store read; the table is in host memory on the CPU anyway.
    host_tier_bytes: int | None = Field(
        None, ge=0, description="bytes of the host-memory tier under the slots; unset: the resident budget on CUDA, 0 on the CPU")
    # A wait holds no thread: each waiter is an asyncio future resolved by the store watcher.
    max_generation_waiters: int = Field(
        1000, ge=1, description="requests waiting at once for a store generation (min_generation); the next gets 503 at once")

    # -- batching -------------------------------------------------------------------------
    max_batch_rows: int = Field(32, ge=1, description="rows per forward")
    max_batch_tokens: int = Field(8192, ge=1, description="padded tokens per forward (rows x longest row): bounds its memory and latency")
    # Under load the queue fills while the previous forward runs, so this only delays
    # requests on an idle server.
    max_wait_ms: float = Field(2.0, ge=0, description="how long the first queued row waits for company")
    # "auto": 32 tokens per forward on the CPU (MiniLM, BERT-base), never on a GPU or packed.
    split_overhead_tokens: Annotated[int, Field(ge=1)] | Literal["auto", "off"] = Field(
        "auto", description="split a batch of uneven lengths into forwards grouped by length when that pads less than a "
        "forward costs: auto, off, or a forward's cost in tokens")
    max_queue_rows: int = Field(1024, ge=1, description="rows waiting for the inference worker before new requests get 503 + Retry-After")
    tokenizer_threads: int = Field(2, ge=1, description="threads tokenizing long requests")
    # 0 = one fewer than the CPU cores, at least 1: the event loop and tokenizers keep a core,
    # so a torch thread is not preempted mid-forward while its sibling spins at a barrier. On
    # a shared 2-core machine that was ~4x less server CPU per request than 2 threads.
    torch_threads: int = Field(
        0, ge=0, description="intra-op threads of the encoder (torch or ONNX Runtime); 0 = cores - 1 (torch), every core (ONNX Runtime)")
    # For machines whose cores one small forward cannot keep busy: on 2 cores two workers
    # measured within noise of one (docs/benchmarks/request_path.md, section 6).
    inference_workers: int = Field(
        1, ge=1, le=64, description="forwards that run at once, each on its own batch from the one queue, sharing the "
        "intra-op threads (ONNX Runtime; PyTorch runs one at a time)")
    # Off: a spinning thread holds a core the event loop needs between ops (request_path.md).
    onnx_spin: bool = Field(False, description="ONNX Runtime's intra-op threads spin between ops instead of sleeping")
    onnx_pack: bool = Field(True, description="ONNX Runtime runs several short rows per sequence instead of padding them")
    # A short text takes ~30 us to tokenize, less than the hop to the pool; longer ones go to
    # the pool so that they never hold up other requests.
    tokenize_inline_chars: int = Field(
        512, ge=0, description="requests of at most this many characters are tokenized on the event loop; 0 = always the pool")
    retry_after_s: int = Field(1, ge=1, description="the Retry-After of a 503")
    # Per input: its characters + 3, at most the backbone's max length. A request larger
    # than all of it runs alone.
    max_inflight_tokens: int = Field(
        65536, ge=1, description="work admitted but not answered yet, in tokens; over it new predict requests get 503 at once")

    # -- limits ---------------------------------------------------------------------------
    max_inputs_per_request: int = Field(64, ge=1, description="inputs in one request")
    max_input_chars: int = Field(10_000, ge=1, description="characters per text (each side of a pair)")
    max_upload_bytes: int = Field(16 * 1024 * 1024, ge=1, description="size of an uploaded bias set")
    # Estimated before any work: inputs x labels shown x label length.
    max_response_bytes: int = Field(8 * 1024 * 1024, ge=1, description="a predict answer's size; over it: 413, asking for top_k")

    # -- training jobs (POST /jobs; docs/TRAINING.md) ---------------------------------------
    # Workers train at a low CPU priority, so serving keeps the CPU first. With replicas (Ray,
    # several servers on one store) set 0 here and run `bitfit jobs worker` on its own.
    train_workers: int = Field(
        1, ge=0, description="`bitfit jobs worker` processes started and stopped with the server (on its store); 0 = none")
    train_worker_nice: int = Field(10, ge=0, le=19, description="the niceness (CPU priority) of those worker processes")
    # Measured in bench/jobs.py (docs/BENCHMARKS.md): what serving keeps while jobs train.
    # "idle" starves a worker's heartbeat too under a saturating load: its lease may run out.
    train_worker_priority: Literal["nice", "idle"] = Field(
        "nice", description="nice: the niceness alone; idle: the workers are also SCHED_IDLE on Linux (CPU only when the "
        "server leaves some; under a sustained full load their leases may expire: raise --train-lease-s)")
    # One thread each: a worker never spreads over every core the server needs (its
    # OpenMP threads would spin beside the forward). 0: torch's default, every core.
    train_worker_threads: int = Field(1, ge=0, description="CPU threads of each of those workers (OMP_NUM_THREADS); 0 = every core")
    train_joint: int = Field(
        1, ge=1, le=64, description="each worker claims up to this many queued jobs that train alike and trains them in one "
        "joint run (bitfit jobs worker --joint); 1 = one by one")
    # A worker that dies (killed, its machine gone) loses its job after this; the next claim re-runs it.
    train_lease_s: float = Field(30.0, ge=1, description="a worker's claim on a job lasts this long without a heartbeat")
    max_train_file_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="size of one training, validation or test file (POST /files, POST /jobs)")
    max_event_streams: int = Field(
        100, ge=1, description="GET /jobs/{id}/events streams (Server-Sent Events) open at once; the next gets 503")
    event_keepalive_s: float = Field(
        15.0, gt=0, description="an idle events stream sends a comment line this often (proxies close silent connections)")

    # -- auth: variables only (a flag's value shows in `ps` and in shell history) ----------
    api_keys: Annotated[list[str], NoDecode] = Field(
        [], description="bearer keys for /tasks mutations (upload, replace, delete, rollback); empty = open")
    predict_api_keys: Annotated[list[str], NoDecode] = Field(
        [], description="bearer keys that may call predict and read /tasks (admin keys may too); empty = open")
    keys_file: Path | None = Field(
        None, description="YAML or JSON file of scoped keys (their sha256, scopes predict/admin, task namespaces such as "
        "acme.*), written by `bitfit keys`, re-read on change; with it set, predict and reads always need a key",
    )
    metrics_api_keys: Annotated[list[str], NoDecode] = Field(
        [], description="bearer keys for /metrics (its labels name tasks); empty = /metrics is open",
    )

    # -- operations -----------------------------------------------------------------------
    sync_interval_s: float = Field(0.25, gt=0, description="how often the store's change log is polled")
    min_generation_timeout_s: float = Field(
        5.0, gt=0, description="how long a request asking for a generation (X-Bitfit-Min-Generation) may wait for it")
    replica_name: str = Field("", description='named in every answer\'s X-Bitfit-Replica header; "" = <hostname>:<pid>')
    metrics_max_tasks: int = Field(100, ge=0, description="distinct task labels in the metrics; the rest are \"other\"")
    graceful_timeout_s: float = Field(30.0, gt=0, description="how long in-flight requests get on SIGTERM")
    header_timeout_s: float = Field(10.0, gt=0, description="a request's headers must arrive within this of its first byte")
    request_read_timeout_s: float = Field(60.0, gt=0, description="a request's whole body must arrive within this")
    otlp_endpoint: str | None = Field(
        None, description="send OpenTelemetry traces over OTLP/HTTP here, e.g. http://collector:4318 (the otel extra)")
    access_log: bool = Field(False, description="one log line per request (method, path, status, duration)")
    # The console is static files calling the public API, so it shows nothing the API would
    # not; off by default on other interfaces so that a public bind grows no UI unasked.
    console: Literal["auto", "on", "off"] = Field(
        "auto", description="the web console at /ui (docs/CONSOLE.md); auto: on when bound to a loopback address only")
    # Read by the `bitfit` command before any settings exist (server/process/cli.py); here so
    # that it is a known variable.
    log_format: Literal["text", "json"] = Field("text", description="text, or one JSON object per line")

    @field_validator("preload", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("api_keys", "predict_api_keys", "metrics_api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        # A variable that is set but holds no key (empty, or only separators) would start
        # an open server without a word: refuse it. Messages never repeat a key.
        if isinstance(value, str) and not _split_list(value):
            raise ValueError("is set but holds no key (empty or only separators); unset it to run without keys")
        keys = _split_list(value)
        if isinstance(keys, list) and any(not isinstance(k, str) or not k.strip() for k in keys):
            raise ValueError("holds an empty key")
        return [k.strip() for k in keys] if isinstance(keys, list) else keys
    @field_validator("store", mode="before")
    @classmethod
    def _store(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def lazy(self, tasks: int) -> bool:
        """Whether a store of ``tasks`` tasks is loaded lazily (``load``)."""
        return self.load == "lazy" or (self.load == "auto" and tasks > self.lazy_above_tasks)

    def console_enabled(self) -> bool:
        """Whether /ui is served (``console``; auto: only on a loopback bind)."""
        if self.console != "auto":
            return self.console == "on"
        return loopback(self.host)

    def resolved_torch_threads(self, cpu_count: int | None) -> int:
        return self.torch_threads or max(1, (cpu_count or 1) - 1)

    def resolved_inference_workers(self, parallel: bool) -> int:
        """Forwards at once: as asked where the engine runs forwards in parallel (``parallel``:
        ONNX Runtime), else 1."""
        return self.inference_workers if parallel else 1

    def resolved_onnx_threads(self, cpu_count: int | None) -> int:
        """ONNX Runtime's threads never spin, so they hand a core back to the event loop
        between ops: by default the forward gets every core, and forwards at once share them
        (docs/benchmarks/request_path.md)."""
        return self.torch_threads or max(1, cpu_count or 1)

    def resolved_onnx_cache(self) -> Path:
        return self.onnx_cache or Path.home() / ".cache" / "bitfit" / "onnx"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE.fullmatch(value):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.max_queue_rows < self.max_inputs_per_request:
            raise ValueError(
                f"max_queue_rows ({self.max_queue_rows}) must be >= max_inputs_per_request "
                f"({self.max_inputs_per_request}), or a full-size request could never be queued"
            )
        for name, keys in (("BITFIT_API_KEYS", self.api_keys), ("BITFIT_PREDICT_API_KEYS", self.predict_api_keys),
                           ("BITFIT_METRICS_API_KEYS", self.metrics_api_keys)):
            short = sum(len(k) < 16 for k in keys)
            if short:  # count and position only: a key, even a rejected one, is never printed
                raise ValueError(f"{name}: {short} of {len(keys)} keys are shorter than 16 characters (use `openssl rand -hex 32`)")
        return self
