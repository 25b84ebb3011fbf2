"""Errors the engine raises for bad requests. server/http/errors.py maps them to HTTP."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of engine errors."""


class UnknownTask(EngineError):
    """The task is not registered (HTTP 404); ``known`` hints at what is."""

    def __init__(self, name: str, known: list[str]) -> None:
        hint = f"; known tasks: {', '.join(sorted(known)[:20])}" if known else "; no tasks are loaded"
        super().__init__(f"task {name!r} is not loaded{hint}")
        self.name, self.known = name, known


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
