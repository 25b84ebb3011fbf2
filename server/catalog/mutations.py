"""Uploads, deletes and rollbacks made through this server: store first, catalog second.

Both steps happen under the sync's lock, so the watcher never sees a half-done mutation
and the very next request is served by the new version. An upload does not force a slot:
a resident task's slot is replaced in place, a task that is not resident takes a slot
only if one is free, and otherwise its next request loads it.
"""

from __future__ import annotations

from collections.abc import Callable

from bias_store.errors import CorruptTask, FingerprintMismatch, InvalidBiasSet, TaskNotFound
from bias_store.store import BiasStore, TaskRecord
from bias_store.validate import ValidatedUpload
from server.catalog.sync import StoreSync
from server.catalog.validation import UploadValidator
from server.exceptions import Forbidden, LabelChange


class TaskMutations:
    def __init__(self, store: BiasStore, sync: StoreSync, validator: UploadValidator) -> None:
        self.store, self.sync, self.validator = store, sync, validator

    def put(
        self, data: bytes, name: str | None = None, allowed: Callable[[str], bool] | None = None, allow_label_change: bool = False,
    ) -> tuple[TaskRecord, ValidatedUpload]:
        """Validate once, store as the next version and serve it (``allowed``: the key's task scope).

        A new version whose labels differ from the current one's (other names, or another
        order: the label indices move) is refused unless ``allow_label_change``.
        """
        upload = self.validator(data, name)  # raises before anything is written
        if allowed is not None and not allowed(upload.name):
            raise Forbidden("this key may not write that task name: it is outside the key's scope")
        with self.sync.lock:
            if not allow_label_change:
                self._same_labels(upload)
            record = self.store.put(upload)
            self.sync.stored(record, upload.bias_set)
        return record, upload

    def _same_labels(self, upload: ValidatedUpload) -> None:
        try:
            current, _ = self.store.get(upload.name)
        except (TaskNotFound, CorruptTask):  # a new task, or a damaged one being replaced: nothing to compare
            return
        old, new = list(current.meta.labels), list(upload.bias_set.meta.labels)
        if old != new:
            raise LabelChange(upload.name, old, new)

    def delete(self, name: str) -> int:
        """Returns the generation of the deletion's log entry."""
        with self.sync.lock:
            generation = self.store.delete(name)
            self.sync.dropped(name)
        return generation

    def rollback(self, name: str, version: int) -> TaskRecord:
        checked: list[ValidatedUpload] = []

        def check(data: bytes) -> None:
            # Validated before the switch and on the very bytes switched to (under the
            # store's lock), so a version this backbone cannot serve is refused, and a
            # delete + re-upload by another process cannot slip in between.
            try:
                checked.append(self.validator(data, name))
            except FingerprintMismatch:
                raise
            except InvalidBiasSet as exc:  # the stored file, not the request, is at fault
                raise CorruptTask(name, f"version {version} is damaged ({exc})") from None

        with self.sync.lock:
            record = self.store.rollback(name, version, check=check)
            self.sync.stored(record, checked[0].bias_set)
        return record
