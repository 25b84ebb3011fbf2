"""The server's one validation step: ``validate_upload`` against the serving backbone, timed;
and ``fetch``, reading one stored version for a slot with it.

Called once per upload, rollback and store load, by the caller; its ``ValidatedUpload``
is what the store stores and the engine registers, so the bytes are parsed only here.
"""

from __future__ import annotations

import hashlib
import time

from bias_store.changelog import Change
from bias_store.errors import CorruptTask, InvalidBiasSet, TaskNotFound, VersionNotFound
from bias_store.format import BiasSet
from bias_store.spec import BackboneSpec
from bias_store.store import BiasStore
from bias_store.validate import ValidatedUpload, validate_bytes, validate_upload
from server.process.metrics import Metrics


class UploadValidator:
    def __init__(self, spec: BackboneSpec, max_bytes: int, metrics: Metrics) -> None:
        self.spec, self.max_bytes, self.metrics = spec, max_bytes, metrics

    def __call__(self, data: bytes, name: str | None = None) -> ValidatedUpload:
        """An upload's bytes: validated, and kept as the store will store them."""
        return self._timed(validate_upload, data, name)

    def stored(self, data: bytes, name: str) -> BiasSet:
        """A stored version's bytes, read back to serve ``name``: validated, never re-serialized
        (a file shared by several names, such as a hard link, keeps its own metadata's name)."""
        return self._timed(validate_bytes, data, name)

    def _timed(self, check, data: bytes, name: str | None):  # noqa: ANN001, ANN202 - one of the two above
        start = time.perf_counter()
        try:
            return check(data, self.spec, max_bytes=self.max_bytes, name=name)
        except InvalidBiasSet as exc:
            self.metrics.upload_rejections.labels(exc.reason).inc()
            raise
        finally:
            self.metrics.validation_seconds.observe(time.perf_counter() - start)


class Unreadable(Exception):
    """A change's stored version cannot be read back as the log names it (deleted or pruned
    since, the file gone or damaged): the task keeps what it served before, if anything."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Rejected(Exception):
    """The stored version reads back but this backbone cannot serve it (InvalidBiasSet)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fetch(store: BiasStore, validator: UploadValidator, change: Change) -> BiasSet:
    """The validated bias set of ``change``'s version, parsed once; Unreadable or Rejected."""
    try:
        data = store.read(change.task, change.version)
    except (TaskNotFound, VersionNotFound, CorruptTask) as exc:
        raise Unreadable(f"version {change.version} cannot be read: {exc}") from None
    if hashlib.sha256(data).hexdigest() != change.sha256:
        raise Unreadable(f"version {change.version} does not hold the bytes the change log names")
    try:
        return validator.stored(data, change.task)
    except InvalidBiasSet as exc:
        raise Rejected(f"version {change.version} cannot be served by this backbone: {exc}") from None
