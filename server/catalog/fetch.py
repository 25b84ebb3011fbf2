"""Reading one stored version for a slot: the store's bytes, checked against the change log, validated."""

from __future__ import annotations

import hashlib

from bias_store.changelog import Change
from bias_store.errors import CorruptTask, InvalidBiasSet, TaskNotFound, VersionNotFound
from bias_store.format import BiasSet
from bias_store.store import BiasStore
from server.catalog.validation import UploadValidator


class Unreadable(Exception):
    """A change's stored version cannot be read back as the log names it (deleted or pruned
    since, the file gone or damaged): the task keeps what it served before, if anything."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Rejected(Exception):
    """The stored version reads back but this backbone cannot serve it (InvalidBiasSet)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fetch(store: BiasStore, validator: UploadValidator, change: Change) -> BiasSet:
    """The validated bias set of ``change``'s version, parsed once; Unreadable or Rejected."""
    try:
        data = store.read(change.task, change.version)
    except (TaskNotFound, VersionNotFound, CorruptTask) as exc:
        raise Unreadable(f"version {change.version} cannot be read: {exc}") from None
    if hashlib.sha256(data).hexdigest() != change.sha256:
        raise Unreadable(f"version {change.version} does not hold the bytes the change log names")
    try:
        return validator(data, change.task).bias_set
    except InvalidBiasSet as exc:
        raise Rejected(f"version {change.version} cannot be served by this backbone: {exc}") from None
