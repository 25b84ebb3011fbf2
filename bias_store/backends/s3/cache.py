"""A bounded local disk tier under the S3 store: a cold miss reads a local file, not a GET.

    <cache_dir>/<task>/v000007-<sha256>.safetensors

A version object never changes once written and its number is never handed out twice,
so (task, version) names one content for ever. The sha256 in the file name is checked
on every read: a damaged or tampered file is removed and fetched again, never served
(this detects corruption, not an attacker who can also rename files). Files beyond
``max_bytes`` go least recently used first (use order: the files' mtimes, touched on read).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from bias_store.backends.folder.files import atomic_write, make_dir

log = logging.getLogger(__name__)


class DiskCache:
    def __init__(self, root: str | os.PathLike, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("cache_bytes must be >= 1")
        self.root, self.max_bytes = Path(root), max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files = {p: p.stat() for p in self.root.glob("*/v*.safetensors")}  # path -> stat at last use
        self._bytes = sum(s.st_size for s in self._files.values())

    def _find(self, name: str, version: int) -> Path | None:
        folder = self.root / name
        matches = list(folder.glob(f"v{version:06d}-*.safetensors")) if folder.is_dir() else []
        return matches[0] if matches else None

    def get(self, name: str, version: int) -> bytes | None:
        """The cached bytes, checked against their sha256; None (and the file gone) otherwise."""
        path = self._find(name, version)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        if hashlib.sha256(data).hexdigest() != path.name.split("-", 1)[1].split(".")[0]:
            log.warning("cache: %s does not hold the bytes its name says: fetched again", path)
            self._drop(path)
            return None
        os.utime(path)
        with self._lock:
            self._files[path] = path.stat()
        return data

    def put(self, name: str, version: int, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        path = self.root / name / f"v{version:06d}-{hashlib.sha256(data).hexdigest()}.safetensors"
        make_dir(path.parent)
        atomic_write(path, data, durable=False)  # a lost file is only fetched again
        with self._lock:
            self._bytes += len(data) - (self._files[path].st_size if path in self._files else 0)
            self._files[path] = path.stat()
            while self._bytes > self.max_bytes:
                oldest = min(self._files, key=lambda p: self._files[p].st_mtime_ns)
                self._drop_locked(oldest)

    def _drop(self, path: Path) -> None:
        with self._lock:
            self._drop_locked(path)

    def _drop_locked(self, path: Path) -> None:
        stat = self._files.pop(path, None)
        if stat is not None:
            self._bytes -= stat.st_size
        path.unlink(missing_ok=True)
