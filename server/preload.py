"""``--preload``: put bias-set files into the store at start-up, once per content."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from bias_store.errors import InvalidBiasSet
from bias_store.store import BiasStore
from server.validation import UploadValidator

log = logging.getLogger(__name__)


class PreloadError(RuntimeError):
    """A --preload file is missing or not a valid bias set (a start-up error)."""


def preload(store: BiasStore, validator: UploadValidator, paths: list[Path]) -> None:
    """Put each file into the store unless its task already serves identical bytes."""
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PreloadError(f"--preload file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        # A stored file always carries its own task's name, so equal bytes are the same task.
        if hashlib.sha256(data).hexdigest() in set(store.state().values()):
            log.info("preload %s: already current in the store", path)
            continue
        try:
            record = store.put(validator(data))
        except InvalidBiasSet as exc:
            raise PreloadError(f"--preload file {str(path)!r} is not a valid bias set for this backbone: {exc}") from None
        log.info("preload %s: stored task %s v%d", path, record.name, record.version)
