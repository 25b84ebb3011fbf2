"""Where a bias set goes: a file, a bias store folder, or a running server's ``POST /tasks``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bias_store.errors import BiasStoreError
from bias_store.filesystem import FilesystemStore, atomic_write
from bias_store.format import BiasSet, dumps
from bias_store.spec import BackboneSpec
from bias_store.validate import validate_upload
from training.errors import ConfigError, PublishError

log = logging.getLogger(__name__)

API_KEY_ENV = "BITFIT_API_KEY"


@dataclass(frozen=True)
class Target:
    """Exactly one of ``out``, ``store`` and ``push``."""

    out: str | None = None
    store: str | None = None
    push: str | None = None
    api_key: str | None = None  # for push; falls back to $BITFIT_API_KEY

    def check(self) -> "Target":
        given = [name for name in ("out", "store", "push") if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError(f"give exactly one of --out FILE, --store DIR, --push URL (got {given or 'none'})")
        if self.push and not self.push.startswith(("http://", "https://")):
            raise ConfigError(f"--push needs a server URL like http://127.0.0.1:8000, got {self.push!r}")
        return self

    def preflight(self) -> None:
        """Fail before training, not after, when the destination cannot work."""
        self.check()
        try:
            if self.out:
                Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            elif self.store:
                Path(self.store).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublishError(f"cannot write to {self.describe()}: {exc}") from None
        if self.push:
            import httpx

            try:
                httpx.get(self.push.rstrip("/") + "/healthz", timeout=5.0)
            except httpx.HTTPError as exc:
                raise PublishError(f"cannot reach the server {self.push}: {exc}") from None

    def describe(self) -> str:
        return f"file {self.out}" if self.out else f"store {self.store}" if self.store else f"server {self.push}"


def publish(bias_set: BiasSet, spec: BackboneSpec, target: Target) -> dict:
    """Write/store/upload ``bias_set``; returns what happened (for reports)."""
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
        store = FilesystemStore(target.store)
        try:
            record = store.put(validate_upload(data, spec))
        except (BiasStoreError, OSError) as exc:
            raise PublishError(f"the store {target.store} refused the bias set: {exc}") from None
        log.info("stored %s v%d in %s", record.name, record.version, target.store)
        return {"target": "store", "store": str(target.store), "task": record.name, "version": record.version, "sha256": record.sha256}
    return _push(bias_set.meta.task, data, target.push, target.api_key or os.environ.get(API_KEY_ENV))


def _push(task: str, data: bytes, url: str, api_key: str | None) -> dict:
    import httpx

    endpoint = url.rstrip("/") + "/tasks"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(endpoint, files={"file": (f"{task}.safetensors", data, "application/octet-stream")},
                              headers=headers, timeout=60.0)
    except httpx.HTTPError as exc:
        raise PublishError(f"could not reach {endpoint}: {exc}") from None
    if response.status_code >= 300:
        try:
            detail = response.json()
        except ValueError:
            detail = response.text[:500]
        hint = " (set --api-key or BITFIT_API_KEY)" if response.status_code in (401, 403) else ""
        raise PublishError(f"{endpoint} answered {response.status_code}{hint}: {detail}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    log.info("pushed %s to %s: %s", task, endpoint, response.status_code)
    return {"target": "server", "url": endpoint, "status": response.status_code, "response": body}
