"""POST /predict/{task} and POST /predict (items for several tasks in one request)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request

from server.auth import require_reader
from server.deps import Services, get_services
from server.engine import Prediction, TaskHandle
from server.engine.errors import InvalidInput, UnknownTask
from server.errors import LimitExceeded, domain_error_response
from server.metrics import UNKNOWN
from server.routes.responses import ERRORS
from server.schemas import Inputs, MultiPredictRequest, MultiPredictResponse, PredictOptions, PredictRequest, PredictResponse, TextPair
from server.settings import Settings

router = APIRouter(tags=["predict"], dependencies=[Depends(require_reader)])


@dataclass
class _Item:
    task: str
    inputs: list  # str | (text, text_pair)
    options: PredictOptions


def _normalize(inputs: Inputs) -> list:
    if isinstance(inputs, str):
        return [inputs]
    return [(x.text, x.text_pair) if isinstance(x, TextPair) else x for x in inputs]


def _check_limits(items: list[_Item], settings: Settings) -> None:
    total = sum(len(item.inputs) for item in items)
    if total > settings.max_inputs_per_request:
        raise LimitExceeded(
            f"request has {total} inputs; the limit is {settings.max_inputs_per_request} per request "
            "(BITFIT_MAX_INPUTS_PER_REQUEST)"
        )
    for n, item in enumerate(items):
        for i, value in enumerate(item.inputs):
            for text in value if isinstance(value, tuple) else (value,):
                if len(text) > settings.max_input_chars:
                    where = f"items[{n}].inputs[{i}]" if len(items) > 1 else f"inputs[{i}]"
                    raise LimitExceeded(
                        f"{where} has {len(text)} characters; the limit is {settings.max_input_chars} per text "
                        "(BITFIT_MAX_INPUT_CHARS)"
                    )


def _out(prediction: Prediction, options: PredictOptions) -> dict:
    scores = None
    if options.top_k is not None or options.return_all_scores:
        ranked = sorted(prediction.scores.items(), key=lambda kv: -kv[1])
        scores = dict(ranked[: options.top_k] if options.top_k is not None else ranked)
    return {"label": prediction.label, "score": prediction.score, "scores": scores, "truncated": prediction.truncated}


async def _until_disconnected(request: Request) -> None:
    # The body has been read, so receive() now only returns when the client goes away
    # (or once the response is sent, by which time nobody waits for this).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _predict(services: Services, request: Request, items: list[_Item]) -> list[dict]:
    """Pin each task's version, tokenize in parallel, run all rows through the batcher."""
    _check_limits(items, services.settings)
    engine, batcher = services.engine, services.batcher
    handles: list[TaskHandle] = []
    try:
        for item in items:
            handles.append(engine.acquire(item.task))  # pins this version until release
        encoded = await asyncio.gather(
            *(batcher.encode(handle, item.inputs) for handle, item in zip(handles, items)), return_exceptions=True
        )
        for n, rows in enumerate(encoded):
            if isinstance(rows, InvalidInput) and len(items) > 1:
                raise InvalidInput(f"items[{n}].{rows}") from None
            if isinstance(rows, BaseException):
                raise rows
        flat = [(handle, row) for handle, rows in zip(handles, encoded) for row in rows]
        predictions = await batcher.submit(flat, disconnected=_until_disconnected(request))
    finally:
        for handle in handles:
            engine.release(handle)
    results, start = [], 0
    for handle, item, rows in zip(handles, items, encoded):
        chunk = predictions[start : start + len(rows)]
        start += len(rows)
        results.append({"task": handle.name, "version": handle.version, "predictions": [_out(p, item.options) for p in chunk]})
    return results


def _is_loaded(services: Services, task: str) -> bool:
    try:
        services.engine.get(task)
        return True
    except UnknownTask:
        return False


def _record(services: Services, tasks: list[str], started: float, exc: BaseException | None) -> None:
    metrics = services.metrics
    status = "200" if exc is None else str(domain_error_response(exc).status_code) if isinstance(exc, Exception) else "499"
    elapsed = time.perf_counter() - started
    for task in dict.fromkeys(tasks):
        label = metrics.task_label(task) if _is_loaded(services, task) else UNKNOWN
        metrics.requests.labels(label, status).inc()
        if exc is None:
            metrics.request_latency.labels(label).observe(elapsed)


@router.post("/predict/{task}", response_model=PredictResponse, response_model_exclude_none=True, responses=ERRORS, summary="Predict with one task")
async def predict_task(
    task: str, body: PredictRequest, request: Request, services: Services = Depends(get_services)
) -> dict:
    """Classify one text, a list of texts, or text pairs with `task`'s current version."""
    started, error = time.perf_counter(), None
    try:
        return (await _predict(services, request, [_Item(task, _normalize(body.inputs), body)]))[0]
    except BaseException as exc:
        error = exc
        raise
    finally:
        _record(services, [task], started, error)


@router.post("/predict", response_model=MultiPredictResponse, response_model_exclude_none=True, responses=ERRORS, summary="Predict for several tasks at once")
async def predict_many(body: MultiPredictRequest, request: Request, services: Services = Depends(get_services)) -> dict:
    """Items for any mix of tasks, answered in order; all rows share the same batches."""
    started, error = time.perf_counter(), None
    items = [_Item(item.task, _normalize(item.inputs), item) for item in body.items]
    try:
        return {"results": await _predict(services, request, items)}
    except BaseException as exc:
        error = exc
        raise
    finally:
        _record(services, [item.task for item in items], started, error)
