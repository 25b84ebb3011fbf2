"""The predict path between the routes and the batcher: limits, version pins, tokenizing.

``Predictor`` is the serving room's one entry: the routes of every protocol (native, HF,
OIP) call ``predictor.predict(items)``. Plain dataclasses in and out; the routes convert
from and to JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bias_store.kinds import ProblemType
from engine import Engine, Prediction, TaskHandle
from engine.errors import InvalidInput
from server.catalog.catalog import TaskCatalog
from server.exceptions import LimitExceeded
from server.process.settings import Settings, env_name
from server.serving.admission import TokenBudget, row_cost
from server.serving.batcher import Batcher
from server.serving.tokenize import Tokenizers


@dataclass(frozen=True)
class TaskInputs:
    """One task's inputs of a request (a schemas.PredictItem, past the HTTP edge)."""

    task: str
    inputs: list  # texts, or (text, text_pair) tuples
    scores_shown: int | None = None  # label scores in each answer: None = all, 0 = only the best
    version: int | None = None  # None: the current version; else a kept one (server/catalog/pinned.py)


@dataclass(frozen=True)
class TaskResult:
    task: str
    version: int  # the one version that computed every prediction below
    predictions: list[Prediction]  # one per input, in order


def check_limits(items: list[TaskInputs], max_inputs: int, max_chars: int) -> None:
    """Refuse oversized or untokenizable requests before any work, naming the input and setting.

    Text is checked once, here: JSON allows lone surrogates ("\\ud800"), which no
    tokenizer (and no JSON answer) can take, so they are a 422 naming the input.
    """
    total = sum(len(item.inputs) for item in items)
    if total > max_inputs:
        raise LimitExceeded(f"request has {total} inputs; the limit is {max_inputs} per request ({env_name('max_inputs_per_request')})")
    for n, item in enumerate(items):
        if not _is_text(item.task):
            raise InvalidInput(f"items[{n}].task is not valid Unicode (it holds a lone surrogate)")
        for i, value in enumerate(item.inputs):
            where = f"items[{n}].inputs[{i}]" if len(items) > 1 else f"inputs[{i}]"
            for text in value if isinstance(value, tuple) else (value,):
                if len(text) > max_chars:
                    raise LimitExceeded(
                        f"{where} has {len(text)} characters; the limit is {max_chars} per text ({env_name('max_input_chars')})"
                    )
                if not _is_text(text):
                    raise InvalidInput(f"{where} is not valid Unicode (it holds a lone surrogate); send UTF-8 text")


def _is_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def json_string_bytes(text: str) -> int:
    """The most bytes ``text`` takes as a JSON string, quotes included, whichever encoder writes
    it: a control character is a 6-byte escape, and an ASCII-only encoder (OIP's) writes
    any other character as up to 12. Counting characters let tiny requests get huge answers."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text) + 2  # the common case, without encoding anything
    return len(json.dumps(text))  # ensure_ascii: the longest form of every character


def check_answer_size(items: list[TaskInputs], handles: list[TaskHandle], limit: int) -> None:
    """Refuse, before any work, a request whose answer would be over ``limit`` bytes."""
    size = 0
    for item, handle in zip(items, handles):
        shown = len(handle.labels) if item.scores_shown is None else min(item.scores_shown, len(handle.labels))
        longest = max(json_string_bytes(label) for label in handle.labels)
        # A multi-label answer also lists its labels that pass their thresholds: all, at most.
        listed = len(handle.labels) if handle.problem_type == ProblemType.MULTI_LABEL else 0
        size += len(item.inputs) * (64 + longest + shown * (longest + 32) + listed * (longest + 4))  # one prediction's JSON, at most
    if size > limit:
        raise LimitExceeded(
            f"the answer would be about {size} bytes; the limit is {limit} ({env_name('max_response_bytes')}): "
            "ask for fewer scores with top_k, or send fewer inputs"
        )


class Predictor:
    """The predict path as one object: what the routes call (``predict``), nothing else."""

    def __init__(
        self, engine: Engine, catalog: TaskCatalog, tokenizers: Tokenizers, batcher: Batcher, budget: TokenBudget,
        settings: Settings,
    ) -> None:
        self.engine, self.catalog, self.tokenizers, self.batcher, self.budget = engine, catalog, tokenizers, batcher, budget
        self.max_inputs, self.max_chars = settings.max_inputs_per_request, settings.max_input_chars
        self.max_response_bytes = settings.max_response_bytes

    async def predict(self, items: list[TaskInputs], disconnected: Callable[[], Awaitable] | None = None) -> list[TaskResult]:
        """Check the limits, pin each task's version (current or asked), admit the work,
        tokenize the items concurrently, batch all their rows."""
        check_limits(items, self.max_inputs, self.max_chars)
        handles: list[TaskHandle] = []
        cost = 0
        try:
            for item in items:  # pinned until released, whatever swaps or evictions happen meanwhile
                handles.append(await self.catalog.acquire(item.task, item.version))
            check_answer_size(items, handles, self.max_response_bytes)
            tokens = sum(row_cost(value, self.engine.backbone.max_length) for item in items for value in item.inputs)
            self.budget.admit(tokens)  # Overloaded (503) before any tokenizing when the budget is spent
            cost = tokens
            encoded = await self._encode(items, handles)
            flat = [(handle, row) for handle, rows in zip(handles, encoded) for row in rows]
            predictions = await self.batcher.submit(flat, disconnected=disconnected)
        finally:
            self.budget.release(cost)
            for handle in handles:
                self.catalog.release(handle)
        results, start = [], 0
        for handle, rows in zip(handles, encoded):
            results.append(TaskResult(handle.name, handle.version, predictions[start : start + len(rows)]))
            start += len(rows)
        return results

    async def _encode(self, items: list[TaskInputs], handles: list[TaskHandle]) -> list[list]:
        if len(items) == 1:  # the common case, without gather's task
            return [await self.tokenizers.encode(handles[0], items[0].inputs)]
        encoded = await asyncio.gather(
            *(self.tokenizers.encode(handle, item.inputs) for handle, item in zip(handles, items)), return_exceptions=True
        )
        for n, rows in enumerate(encoded):
            if isinstance(rows, InvalidInput) and len(items) > 1:
                raise InvalidInput(f"items[{n}].{rows}") from None
            if isinstance(rows, BaseException):
                raise rows
        return encoded

    def close(self, timeout: float | None = None) -> None:
        """Finish queued work, then stop the tokenizer threads."""
        self.batcher.close(timeout=timeout)
        self.tokenizers.close()
