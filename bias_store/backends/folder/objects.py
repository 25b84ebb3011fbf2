"""A folder seen as objects, for the filesystem store's change log (see changelog.LogObjects).

``create`` is atomic and exclusive: the bytes go to a temp file, fsynced, then are
``os.link``ed to the key's name, which fails if the name exists. So a reader sees a whole
entry or none, and two writers (threads or processes) can never both create one key.

``replace`` is a compare-and-swap, as S3's If-Match: under an flock'ed lock file beside
the key, the current file's ETag (its inode, mtime and size, read from the same open file
as its bytes) must still be the caller's, then the new bytes go to a temp file that
``os.replace`` moves over the key. The job queue (training/jobs/queue.py) claims jobs so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bias_store.backends.folder.files import fsync_dir, make_dir, staged


class FolderObjects:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The key's bytes and ETag, or None if there is no such key."""
        try:
            with open(self.root / key, "rb") as f:
                # The ETag comes from the file we read: a concurrent replace makes a new inode.
                return f.read(), _etag(os.fstat(f.fileno()))
        except (FileNotFoundError, NotADirectoryError):
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
        self._make_parents(path)
        with staged(path, body) as tmp:
            try:
                os.link(tmp, path)  # fails if the key exists: exclusive create
            except FileExistsError:
                return False
        fsync_dir(path.parent)
        return True

    def replace(self, key: str, body: bytes, etag: str | None) -> bool:
        """Replace ``key`` only if it still has ``etag`` (create it if ``etag`` is None); False if not."""
        path = self.root / key
        self._make_parents(path)
        with _key_lock(path):
            try:
                current = _etag(os.stat(path))
            except FileNotFoundError:
                current = None
            if current != etag:
                return False
            with staged(path, body) as tmp:
                os.replace(tmp, path)
        fsync_dir(path.parent)
        return True

    def _make_parents(self, path: Path) -> None:
        """The key's folders, each 0750 (a queue's keys are nested: jobs/<id>/events/...)."""
        missing = []
        for folder in path.parents:
            if folder.is_dir():
                break
            missing.append(folder)
        for folder in reversed(missing):
            make_dir(folder)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


@contextlib.contextmanager
def _key_lock(path: Path):
    """An exclusive flock on ``.<name>.lock`` beside ``path`` (threads and processes alike:
    each open is its own open file description)."""
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock
