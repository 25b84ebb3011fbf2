"""A folder seen as objects, for the filesystem store's change log (see changelog.LogObjects).

``create`` is atomic and exclusive: the bytes go to a temp file, fsynced, then are
``os.link``ed to the key's name, which fails if the name exists. So a reader sees a whole
entry or none, and two writers (threads or processes) can never both create one key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from bias_store.backends.folder.files import fsync_dir, make_dir, staged


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
        with staged(path, body) as tmp:
            try:
                os.link(tmp, path)  # fails if the key exists: exclusive create
            except FileExistsError:
                return False
        fsync_dir(path.parent)
        return True

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)
