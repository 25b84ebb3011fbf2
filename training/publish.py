"""Where a bias set goes: a file, a bias store (a folder or ``s3://bucket/prefix``, through
``open_store``), or a running server (through bitfit_client)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bitfit_client import API_KEY_ENV, BitfitError, Client, Forbidden, Retry, TransportError, Unauthorized

from bias_store.backends.folder.files import atomic_write
from bias_store.errors import BiasStoreError
from bias_store.format import BiasSet, dumps
from bias_store.open_store import open_store
from bias_store.spec import BackboneSpec
from bias_store.store import BiasStore
from bias_store.validate import validate_upload
from training.errors import ConfigError, PublishError

log = logging.getLogger(__name__)

KEY_HINT = f"pass --api-key or set {API_KEY_ENV} to one of the server's BITFIT_API_KEYS"


@dataclass(frozen=True)
class Target:
    """Exactly one of ``out``, ``store`` and ``push``."""

    out: str | None = None
    store: str | None = None  # a folder, file://... or s3://bucket/prefix
    push: str | None = None
    s3_endpoint_url: str | None = None  # for an s3:// store off AWS (SeaweedFS, MinIO, ...)
    store_options: dict = field(default_factory=dict)  # open_store's S3 timeouts and disk tier (training/store_args.py)
    api_key: str | None = None  # for push; None: $BITFIT_API_KEY (read by bitfit_client)
    # Pushes ride out a restarting or overloaded server (503 + Retry-After, connection
    # refused) for about a minute; an upload that may have landed is never sent twice.
    retry: Retry = field(default_factory=lambda: Retry(attempts=6, backoff_s=1.0))

    def check(self) -> "Target":
        given = [name for name in ("out", "store", "push") if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError(f"give exactly one of --out FILE, --store DIR, --push URL (got {given or 'none'})")
        if self.push and not self.push.startswith(("http://", "https://")):
            raise ConfigError(f"--push needs a server URL like http://127.0.0.1:8000, got {self.push!r}")
        return self

    def client(self, patient: bool = True) -> Client:
        # Checks before training fail fast (a server down now is the user's to fix); the
        # upload after training waits out a restart.
        return Client(self.push, api_key=self.api_key, retry=self.retry if patient else Retry(attempts=2), timeout=60.0)

    def preflight(self) -> None:
        """Fail before training, not after, when the destination cannot work: a folder that
        cannot be written, a server that cannot be reached or refuses the key."""
        self.check()
        try:
            if self.out:
                Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            elif self.store:
                self.open_store().generation()  # a folder is created; S3 must answer
        except (OSError, ValueError, BiasStoreError) as exc:
            raise PublishError(f"cannot write to {self.describe()}: {exc}") from None
        if self.push:
            with self.client(patient=False) as client:
                try:
                    client.check_admin()
                except TransportError as exc:
                    raise PublishError(f"cannot reach the server {self.push}: {exc}") from None
                except (Unauthorized, Forbidden) as exc:
                    raise PublishError(f"the server {self.push} refuses this key for uploads ({exc}); {KEY_HINT}") from None
                except BitfitError as exc:
                    raise PublishError(f"the server {self.push} cannot take uploads: {exc}") from None

    def open_store(self) -> BiasStore:
        """The ``--store`` target, whatever its kind (the same door the server opens it by)."""
        return open_store(self.store, s3_endpoint_url=self.s3_endpoint_url, **self.store_options)

    def check_backbone(self, spec: BackboneSpec) -> None:
        """Before training: the server must serve the backbone this run trains on (else 409 after training)."""
        if not self.push:
            return
        with self.client(patient=False) as client:
            try:
                served = client.ready().fingerprint
            except BitfitError as exc:
                raise PublishError(f"cannot ask {self.push} for its backbone: {exc}") from None
        if served != spec.fingerprint:
            raise PublishError(
                f"the server {self.push} serves another backbone (fingerprint {served[:12]}) than this run trains on "
                f"({spec.base_model}, {spec.fingerprint[:12]}): it would refuse the bias set; use --backbone to match"
            )

    def describe(self) -> str:
        return f"file {self.out}" if self.out else f"store {self.store}" if self.store else f"server {self.push}"


def publish(bias_set: BiasSet, spec: BackboneSpec, target: Target, keep_dir: str | Path | None = None) -> dict:
    """Write/store/upload ``bias_set``; returns what happened (for reports).

    When an upload fails and ``keep_dir`` is given, the bias set is first written there, so
    a trained set is never lost: the error names the file to upload later.
    """
    target.check()
    data = dumps(bias_set)
    if target.out:
        path = Path(target.out)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise PublishError(f"could not write {path}: {exc}") from None
        log.info("wrote %s (%d bytes)", path, len(data))
        return {"target": "file", "path": str(path), "bytes": len(data)}
    if target.store:
        try:
            record = target.open_store().put(validate_upload(data, spec))
        except (BiasStoreError, OSError, ValueError) as exc:
            raise PublishError(f"the store {target.store} refused the bias set: {exc}") from None
        log.info("stored %s v%d in %s", record.name, record.version, target.store)
        return {"target": "store", "store": str(target.store), "task": record.name, "version": record.version, "sha256": record.sha256}
    try:
        return _push(bias_set.meta.task, data, target)
    except PublishError as exc:
        if keep_dir is None:
            raise
        kept = Path(keep_dir) / f"{bias_set.meta.task}.safetensors"
        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(kept, data)
        raise PublishError(f"{exc}; the bias set is saved at {kept}: upload it later with "
                           f"`curl -F file=@{kept} {target.push.rstrip('/')}/tasks`") from None


def _push(task: str, data: bytes, target: Target) -> dict:
    endpoint = target.push.rstrip("/") + "/tasks"
    with target.client() as client:
        try:
            info = client.upload(data)
        except TransportError as exc:
            raise PublishError(f"could not reach {endpoint}: {exc}") from None
        except (Unauthorized, Forbidden) as exc:
            raise PublishError(f"{endpoint} answered {exc.status}: {exc.message}; {KEY_HINT}") from None
        except BitfitError as exc:
            raise PublishError(f"{endpoint} answered {exc.status} {exc.code}: {exc.message}") from None
    log.info("pushed %s v%d to %s", task, info.version, endpoint)
    return {"target": "server", "url": endpoint, "status": 201, "task": info.name, "version": info.version, "sha256": info.sha256}
