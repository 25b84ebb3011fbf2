"""Server settings: flags and ``BITFIT_*`` environment variables, read once and passed in.

Nothing else in the server reads ``os.environ``; ``create_app(settings)`` gets this object
and keeps it on ``app.state.settings``. docs/OPERATIONS.md lists every variable.
"""

from __future__ import annotations

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


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # -- where and what to serve ----------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # A folder (created if missing), file://..., or s3://bucket/prefix (see docs/SCALING.md).
    store: str = "store"
    # The S3 endpoint for an s3:// store that is not AWS (MinIO, SeaweedFS, ...). Credentials
    # and region come the standard AWS way (AWS_* variables, a profile, an IAM role).
    s3_endpoint_url: str | None = None
    backbone: str | None = None  # path or id; None = the packaged all-MiniLM-L6-v2
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    # torch.compile the forward ("default"; on CUDA with CUDA graphs) and warm it up at
    # start-up, one graph per length bucket: minutes of start-up on a CPU. See engine.compiled.
    compile: Literal["off", "default", "max-autotune"] = "off"
    # Who runs the encoder: "auto" = ONNX Runtime on the CPU when it is installed (the
    # `onnx` extra), PyTorch otherwise and on a GPU. docs/BENCHMARKS.md has the figures.
    backend: Literal["torch", "onnxruntime", "auto"] = "auto"
    # "int8": ONNX Runtime dynamic quantization of the encoder's MatMuls (onnxruntime only).
    quantize: Literal["none", "int8"] = "none"
    # Where the exported ONNX graph is cached (one folder per backbone fingerprint and
    # exporter version); None = ~/.cache/bitfit/onnx.
    onnx_cache: Path | None = None
    # Bias-set files put into the store at start-up (see preload_policy).
    preload: Annotated[list[Path], NoDecode] = []
    # What a preload does when the store already has the task: "if_absent" leaves it alone
    # (an operator's later upload is never reverted by a restart); "replace" stores the
    # file as a new version whenever its bytes differ from the current one.
    preload_policy: Literal["if_absent", "replace"] = "if_absent"
    keep_versions: int = Field(5, ge=1)
    # When a stored task is read, validated and registered: "eager" = all at start-up (start-up
    # time grows with the store: ~4 ms a task), "lazy" = on first use (ready once the catalog
    # is read; the first request for a task waits for its load, ~4 ms), "auto" = eager when
    # the store holds at most lazy_above_tasks tasks at start-up, lazy above. docs/SCALING.md.
    load: Literal["auto", "eager", "lazy"] = "auto"
    lazy_above_tasks: int = Field(1000, ge=0)
    # When lazy: tasks loaded in the background after start-up, most recently changed first,
    # without holding up requests (the bias table starts with room for them); 0 = none.
    warm_up_tasks: int = Field(1000, ge=0)
    # Kept versions other than the current ones that version-pinned requests
    # (?version=N) keep loaded at a time; each costs one bias-table row and its head.
    max_pinned_versions: int = Field(8, ge=0)

    # -- batching -------------------------------------------------------------------------
    max_batch_rows: int = Field(32, ge=1)
    # Padded tokens per batch (rows x longest row); bounds memory and latency of one forward.
    max_batch_tokens: int = Field(8192, ge=1)
    # How long the first queued row waits for company. Under load the queue fills while
    # the previous forward runs, so this only delays requests on an idle server.
    max_wait_ms: float = Field(2.0, ge=0)
    # A batch whose rows differ a lot in length runs as a few forwards grouped by length
    # when that pads less than a forward costs: "auto" (32 tokens per forward on the CPU,
    # measured for MiniLM and BERT-base, more for narrower models; never on a GPU), "off",
    # or a forward's cost in tokens.
    split_overhead_tokens: Annotated[int, Field(ge=1)] | Literal["auto", "off"] = "auto"
    # Rows waiting for the inference worker before new requests get 503 + Retry-After.
    max_queue_rows: int = Field(1024, ge=1)
    tokenizer_threads: int = Field(2, ge=1)
    # Intra-op threads of the encoder, torch's (a process-wide setting) or ONNX Runtime's
    # (which never spin-wait: docs/OPERATIONS.md). 0 = one fewer than
    # the CPU cores, at least 1: the event loop and tokenizers keep a core, so a torch
    # thread is not preempted mid-forward while its sibling spins at a barrier. On a
    # shared 2-core machine that was ~4x less server CPU per request than 2 threads.
    torch_threads: int = Field(0, ge=0)
    # Requests with at most this many characters are tokenized on the event loop: a short
    # text takes ~30 us, less than the hop to the pool. Longer ones go to the tokenizer
    # threads so that they never hold up other requests. 0 = always use the pool.
    tokenize_inline_chars: int = Field(512, ge=0)
    retry_after_s: int = Field(1, ge=1)
    # Work admitted but not answered yet, in tokens (an upper bound per input: its characters
    # + 3, at most the backbone's max length). Over it, new predict requests get 503 +
    # Retry-After at once, before tokenizing (a request larger than all of it runs alone).
    max_inflight_tokens: int = Field(65536, ge=1)

    # -- limits ---------------------------------------------------------------------------
    max_inputs_per_request: int = Field(64, ge=1)
    max_input_chars: int = Field(10_000, ge=1)  # per text (each side of a pair)
    max_upload_bytes: int = Field(16 * 1024 * 1024, ge=1)
    # A predict answer's size, estimated before any work (inputs x labels shown x label
    # length); over it: 413, asking for top_k.
    max_response_bytes: int = Field(8 * 1024 * 1024, ge=1)

    # -- auth -----------------------------------------------------------------------------
    # Bearer keys for /tasks mutations (upload, replace, delete, rollback). Empty = open.
    api_keys: Annotated[list[str], NoDecode] = []
    # Bearer keys that may call predict and read /tasks (admin keys may too). Empty = open.
    predict_api_keys: Annotated[list[str], NoDecode] = []
    keys_file: Path | None = Field(
        None, description="YAML or JSON file of scoped keys (their sha256, scopes predict/admin, task namespaces such as "
        "acme.*), written by `bitfit keys`, re-read on change; with it set, predict and reads always need a key",
    )
    metrics_api_keys: Annotated[list[str], NoDecode] = Field(
        [], description="bearer keys for /metrics (its labels name tasks); empty = /metrics is open",
    )

    # -- operations -----------------------------------------------------------------------
    sync_interval_s: float = Field(0.25, gt=0)  # how often the store's change log is polled
    # How long a request asking for a generation (X-Bitfit-Min-Generation) may wait for it.
    min_generation_timeout_s: float = Field(5.0, gt=0)
    # Named in every answer's X-Bitfit-Replica header; "" = "<hostname>:<pid>".
    replica_name: str = ""
    metrics_max_tasks: int = Field(100, ge=0)  # distinct task labels; the rest are "other"
    graceful_timeout_s: float = Field(30.0, gt=0)  # in-flight requests get this long on SIGTERM
    # Slow clients: a request's headers must arrive within header_timeout_s of its first
    # byte (or of the connection), its whole body within request_read_timeout_s.
    header_timeout_s: float = Field(10.0, gt=0)
    request_read_timeout_s: float = Field(60.0, gt=0)
    access_log: bool = False
    # Read by the `bitfit` command before any settings exist (server/process/cli.py); here so that
    # it is a known variable.
    log_format: Literal["text", "json"] = "text"

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

    def resolved_torch_threads(self, cpu_count: int | None) -> int:
        return self.torch_threads or max(1, (cpu_count or 1) - 1)

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
