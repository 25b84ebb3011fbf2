"""What the routes, /readyz and the metrics read of the catalog: copies taken under its lock.

The one answer to "is this task served, and how?" (``TaskView.state``); pages of the
catalog in name order; the counts a health probe or a scrape reports. Nothing here reads
the store or walks every task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from server.catalog.catalog import TaskCatalog
from server.catalog.state import Residency

MAX_UNHEALTHY = 20  # unhealthy tasks a health answer names (the count is always whole)


@dataclass(frozen=True)
class TaskView:
    name: str
    version: int
    sha256: str
    state: str  # stored, loading, resident, evicted or unservable (server/catalog/state.py)
    reason: str | None = None  # why it (or its newest version) cannot be served

    @property
    def loaded(self) -> bool:
        """A slot serves the task's current version."""
        return self.state == Residency.RESIDENT.value and self.reason is None


def view(catalog: TaskCatalog, name: str) -> TaskView | None:
    """The task's state, or None if the store does not hold it."""
    with catalog.lock:
        return _view(catalog, name)


def _view(catalog: TaskCatalog, name: str) -> TaskView | None:  # caller holds catalog.lock
    change = catalog.stored.get(name)
    if change is None:
        return None
    state = catalog.states.get(name)
    if state is None:
        return TaskView(name, change.version, change.sha256, Residency.STORED.value)
    residency = state.residency
    if residency == Residency.RESIDENT and not state.serves_current and state.reason is None:
        residency = Residency.LOADING  # a newer version is on its way into a slot
    return TaskView(name, change.version, change.sha256, residency.value, state.reason)


def page_in(catalog: TaskCatalog, limit: int, after: str | None, prefixes: list[str], names: list[str] = ()) -> list[TaskView]:
    """Up to ``limit`` tasks in name order after ``after`` (exclusive) whose names start with
    any of ``prefixes`` or are one of ``names`` (all tasks: ``[""]``; a tenant: its
    namespaces): O(prefixes x (log n + limit)), whatever the catalog holds."""
    with catalog.lock:
        found = {name for prefix in prefixes for name in catalog.names.page(limit, after, prefix)}
        found.update(n for n in names if n in catalog.stored and (after is None or n > after))
        return [v for name in sorted(found)[:limit] if (v := _view(catalog, name)) is not None]


def unhealthy(catalog: TaskCatalog, limit: int = MAX_UNHEALTHY, allows: Callable[[str], bool] | None = None) -> dict[str, str]:
    """Up to ``limit`` tasks that cannot be served as stored, with why (name order)."""
    with catalog.lock:  # the troubled index, not every touched task's state
        found = sorted((name, catalog.states[name].reason) for name in catalog.troubled if allows is None or allows(name))
    return dict(found[:limit])


def counts(catalog: TaskCatalog) -> dict[str, int]:
    """Catalog size, resident tasks and slots: O(1), for every scrape and probe."""
    engine = catalog.engine
    return {
        "catalog_tasks": len(catalog.stored), "resident_tasks": catalog.resident, "pinned_versions": catalog.pinned_count,
        "unhealthy_tasks": len(catalog.troubled),
        "slots": engine.capacity, "free_slots": engine.free_slots,
    }
