"""``--preload``: put bias-set files into the store at start-up, once per content."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from bias_store.errors import InvalidBiasSet
from bias_store.store import BiasStore
from server.catalog.validation import UploadValidator

log = logging.getLogger(__name__)


class PreloadError(RuntimeError):
    """A --preload file is missing or not a valid bias set (a start-up error)."""


def preload(store: BiasStore, validator: UploadValidator, paths: list[Path], policy: str = "if_absent") -> None:
    """Put each file into the store when the store lacks its task.

    A restart never goes backwards: a task the store has (an operator may have updated it
    since) is left alone, unless ``policy == "replace"``, which stores the file whenever
    its bytes differ from the task's current version.
    """
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PreloadError(f"--preload file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        try:
            upload = validator(data)
        except InvalidBiasSet as exc:
            raise PreloadError(f"--preload file {str(path)!r} is not a valid bias set for this backbone: {exc}") from None
        name = upload.bias_set.meta.task
        current = store.state().get(name)
        if current is not None and (policy != "replace" or current == hashlib.sha256(data).hexdigest()):
            log.info("preload %s: task %s is already in the store; kept (preload policy %s)", path, name, policy)
            continue
        record = store.put(upload)
        log.info("preload %s: stored task %s v%d", path, record.name, record.version)
