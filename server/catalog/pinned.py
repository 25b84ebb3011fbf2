"""Kept versions served on request (``/predict/{task}?version=N``, OIP ``versions/N``).

The catalog serves each task's current version. A request pinned to another kept version
gets a slot of its own, loaded from the store on first use and kept in the task's state
(``TaskState.pinned``) beside its current one: at most ``max_pinned`` such slots at once,
sharing the resident budget and its least-recently-used order. Any new current version or
a delete gives them back, so a pruned version answers 404 and a deleted task is unknown.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine import TaskHandle

if TYPE_CHECKING:
    from server.catalog.catalog import TaskCatalog

log = logging.getLogger(__name__)


def acquire_pinned(catalog: TaskCatalog, name: str, version: int) -> TaskHandle:
    """The handle serving ``name`` at ``version``, held until ``release`` (blocking: may read the store)."""
    current = catalog.acquire_blocking(name)  # UnknownTask (404) for a task not stored
    if current.version == version:
        return current
    try:
        with catalog.lock:
            state = catalog.states[name]
            handle = catalog.touch_pinned(state, version)
            if handle is not None:
                return handle
            sha = state.change.sha256
        bias_set, version_sha = catalog.read_kept(name, version)  # VersionNotFound (404) names the kept versions
        with catalog.lock:
            state = catalog.states.get(name)
            if state is None or state.change.sha256 != sha:  # replaced or deleted meanwhile: look again
                return acquire_pinned(catalog, name, version)
            handle = catalog.touch_pinned(state, version) or catalog.pin(state, version, bias_set, version_sha)
        log.info("loaded %s v%d beside the current v%d", name, version, current.version)
        return handle
    finally:
        catalog.release(current)
