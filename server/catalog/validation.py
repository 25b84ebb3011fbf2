"""The server's one validation step: ``validate_upload`` against the serving backbone, timed.

Called once per upload, rollback and store load, by the caller; its ``ValidatedUpload``
is what the store stores and the engine registers, so the bytes are parsed only here.
"""

from __future__ import annotations

import time

from bias_store.errors import InvalidBiasSet
from bias_store.spec import BackboneSpec
from bias_store.validate import ValidatedUpload, validate_upload
from server.process.metrics import Metrics


class UploadValidator:
    def __init__(self, spec: BackboneSpec, max_bytes: int, metrics: Metrics) -> None:
        self.spec, self.max_bytes, self.metrics = spec, max_bytes, metrics

    def __call__(self, data: bytes, name: str | None = None) -> ValidatedUpload:
        start = time.perf_counter()
        try:
            return validate_upload(data, self.spec, max_bytes=self.max_bytes, name=name)
        except InvalidBiasSet as exc:
            self.metrics.upload_rejections.labels(exc.reason).inc()
            raise
        finally:
            self.metrics.validation_seconds.observe(time.perf_counter() - start)
