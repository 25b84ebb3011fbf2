"""Errors the engine raises for bad requests. server/http/errors.py maps them to HTTP."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from bias_store.errors import TaskNotFound


class EngineError(Exception):
    """Base class of engine errors."""


class UnknownTask(EngineError, TaskNotFound):
    """No such task (HTTP 404): the store's ``TaskNotFound``, raised where tasks are served, so
    one error answers an unknown task everywhere. ``known`` hints at what is: at most ``HINTS``
    names, the first ones ``known`` yields (never a copy or a sort of them all)."""

    HINTS = 20

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        TaskNotFound.__init__(self, name, sorted(itertools.islice(known, self.HINTS)))


class NoFreeSlot(EngineError):
    """Every slot of a fixed-capacity bias table is held (``Engine(grow=False)``)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(
            f"all {capacity} slots of the bias table are in use: release a task (or evict one) first, "
            "or build the engine with a larger capacity"
        )
        self.capacity = capacity


class InvalidInput(EngineError):
    """An input the task cannot take (HTTP 422). ``index`` is the offending input's position."""

    def __init__(self, message: str, index: int | None = None) -> None:
        where = f"inputs[{index}]: " if index is not None else ""
        super().__init__(where + message)
        self.index = index


class EmptyInput(InvalidInput):
    pass


class PairMismatch(InvalidInput):
    """A text pair sent to a single-text task, or a single text to a pair task."""


class WrongInputType(InvalidInput):
    pass
