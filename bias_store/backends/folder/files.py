"""File operations of the filesystem store: atomic, umask-independent, never through a symlink."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from bias_store.errors import StoreUnavailable

FILE_MODE, DIR_MODE = 0o640, 0o750
# OS errors that mean "this store cannot be written now" (answered 503, not 500).
UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}

FLUSH_EVERY = 4 << 20  # bytes written between two fdatasyncs of a large durable file


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged(path: Path, data: bytes, durable: bool = True) -> Iterator[Path]:
    """A temp file beside ``path`` holding ``data`` (0640, fsynced when ``durable``), for the
    caller to move into place; removed on exit whatever happened."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # whatever the umask
        with os.fdopen(fd, "wb") as f:
            # A large file (a million-task snapshot is ~90 MB) goes down in pieces, each flushed:
            # on ext4 another writer's fsync waits for every dirty page of the journal's
            # transaction, so 90 MB left dirty made every upload beside it wait ~1-2 s.
            view = memoryview(data)
            for start in range(0, len(view), FLUSH_EVERY):
                f.write(view[start:start + FLUSH_EVERY])
                if durable and len(view) > FLUSH_EVERY:
                    f.flush()
                    os.fdatasync(f.fileno())
            if durable:
                f.flush()
                os.fsync(f.fileno())
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    ``durable`` also fsyncs the file and its folder, so the new file survives a crash;
    a mere change signal (GENERATION) does not need that.
    """
    with staged(path, data, durable) as tmp:
        os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def read_file(path: Path) -> bytes:
    """A file's bytes, refusing a symlink (OSError ELOOP) so the store never reads outside itself."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def make_dir(path: Path) -> None:
    """A 0750 folder (whatever the umask); an existing one is left as it is."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    os.chmod(path, DIR_MODE)


@contextlib.contextmanager
def writing(what: str):
    """Turn "cannot write here" OS errors into StoreUnavailable, naming the operation."""
    try:
        yield
    except OSError as exc:
        if exc.errno in UNWRITABLE:
            raise StoreUnavailable(f"the store cannot be written ({what}): {exc.strerror}") from None
        raise
