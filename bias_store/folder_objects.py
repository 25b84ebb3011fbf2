"""A folder seen as objects, for the filesystem store's change log (see changelog.LogObjects).

``create`` is atomic and exclusive: the bytes go to a temp file, fsynced, then are
``os.link``ed to the key's name, which fails if the name exists. So a reader sees a whole
entry or none, and two writers (threads or processes) can never both create one key.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from bias_store.fs_io import FILE_MODE, fsync_dir, make_dir


class FolderObjects:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            return (self.root / key).read_bytes(), ""
        except FileNotFoundError:
            return None

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Keys under the folder ``prefix`` (it ends with "/"), sorted, after ``start_after``."""
        try:
            names = sorted(n for n in os.listdir(self.root / prefix) if not n.startswith("."))
        except FileNotFoundError:
            return iter(())
        keys = (prefix + n for n in names)
        return (k for k in keys if start_after is None or k > start_after)

    def create(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> bool:
        path = self.root / key
        make_dir(path.parent)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fsync_dir(path.parent)
        return True

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)
