"""The folder store: a store in one folder, shared by threads and processes through ``flock``.

``store.py`` (the backend), ``tasks.py`` (the task folders, read without the lock),
``recovery.py`` (crash repair when a store opens), ``objects.py`` (the folder as the change
log's objects), ``files.py`` (atomic, umask-independent file writes).
"""

from bias_store.backends.folder.store import FilesystemStore

__all__ = ["FilesystemStore"]
