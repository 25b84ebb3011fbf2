"""POST /predict/{task} and POST /predict (items for several tasks in one request)."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from engine import InvalidInput, Prediction, UnknownTask
from server import inference
from server.auth import GuardedRoute, require_reader
from server.deps import Services, get_services, min_generation
from server.errors import Forbidden, GenerationNotReached, LimitExceeded, NotReady, Overloaded, Unauthorized, status_of
from server.inference import TaskInputs, TaskResult
from server.routes.body import Handler, LimitedBodyRoute
from server.routes.responses import errors
from server.schemas import Inputs, MultiPredictRequest, MultiPredictResponse, PredictOptions, PredictRequest, PredictResponse, TextPair


class ShedRoute(APIRoute):
    """While the work budget is spent, a predict request is answered 503 before its body is read."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def shed(request: Request) -> Response:
            services = getattr(request.app.state, "services", None)
            if services is not None and services.budget.spent:
                # Closing the connection stops the client's upload of a body nobody reads.
                raise services.budget.overloaded(close=True)
            return await handler(request)

        return shed


class PredictRoute(GuardedRoute, ShedRoute, LimitedBodyRoute):
    """Auth (401/403), shedding (503), the body limit and shape (413): only then is the body read."""


router = APIRouter(tags=["predict"], dependencies=[Depends(require_reader), Depends(min_generation)], route_class=PredictRoute)

ERRORS = errors(
    Unauthorized, Forbidden, UnknownTask, LimitExceeded, InvalidInput, RequestValidationError, Overloaded, NotReady,
    GenerationNotReached,
)


def _inputs(inputs: Inputs) -> list:
    if isinstance(inputs, str):
        return [inputs]
    return [(x.text, x.text_pair) if isinstance(x, TextPair) else x for x in inputs]


def _shown(options: PredictOptions) -> int | None:
    """How many label scores each answer shows (None: all), for the answer-size check."""
    if options.top_k is not None:
        return options.top_k
    return None if options.return_all_scores else 0


def _prediction(prediction: Prediction, options: PredictOptions) -> dict:
    out = {"label": prediction.label, "score": prediction.score, "truncated": prediction.truncated}
    if options.top_k is not None or options.return_all_scores:
        ranked = sorted(prediction.scores.items(), key=lambda kv: -kv[1])
        out["scores"] = dict(ranked[: options.top_k] if options.top_k is not None else ranked)
    return out


def _json(content: dict) -> Response:
    """The answer as JSON bytes, straight from orjson. Returning a Response skips FastAPI's
    validation and re-encoding of ``response_model`` (which still documents the shape): the
    dicts above are built to it, and tests/server/test_routes.py checks them against it."""
    return Response(orjson.dumps(content), media_type="application/json")


def _result(result: TaskResult, options: PredictOptions) -> dict:
    return {"task": result.task, "version": result.version, "predictions": [_prediction(p, options) for p in result.predictions]}


async def _run(services: Services, request: Request, items: list[TaskInputs]) -> list[TaskResult]:
    """Run the items, counting the request in the metrics whatever happens."""
    settings, started, status = services.settings, time.perf_counter(), 200

    async def until_disconnected() -> None:
        # The body has been read, so receive() now only returns once the client is gone
        # (or the response was sent, and then nobody waits for this any more).
        while (await request.receive())["type"] != "http.disconnect":
            pass

    def loaded(task: str) -> bool:
        try:
            services.engine.get(task)
            return True
        except UnknownTask:
            return False

    try:
        inference.check_limits(items, settings.max_inputs_per_request, settings.max_input_chars)
        return await inference.predict(
            services.engine, services.tokenizers, services.batcher, services.budget, items, settings.max_response_bytes,
            until_disconnected,
        )
    except BaseException as exc:
        status = status_of(exc)
        raise
    finally:
        services.metrics.observe_request([i.task for i in items], status, time.perf_counter() - started, loaded)


@router.post(
    "/predict/{task}", response_model=PredictResponse, response_model_exclude_none=True, responses=ERRORS,
    summary="Predict with one task",
)
async def predict_task(task: str, body: PredictRequest, request: Request, services: Services = Depends(get_services)) -> Response:
    """Classify one text, a list of texts, or text pairs with `task`'s current version."""
    (result,) = await _run(services, request, [TaskInputs(task, _inputs(body.inputs), _shown(body))])
    return _json(_result(result, body))


@router.post(
    "/predict", response_model=MultiPredictResponse, response_model_exclude_none=True, responses=ERRORS,
    summary="Predict for several tasks at once",
)
async def predict_many(body: MultiPredictRequest, request: Request, services: Services = Depends(get_services)) -> Response:
    """Items for any mix of tasks, answered in order; all rows share the same batches."""
    results = await _run(services, request, [TaskInputs(item.task, _inputs(item.inputs), _shown(item)) for item in body.items])
    return _json({"results": [_result(result, item) for result, item in zip(results, body.items)]})
