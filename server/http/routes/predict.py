"""POST /predict/{task} and POST /predict (items for several tasks in one request).

``/predict/{task}`` also takes the Hugging Face text-classification request (``inputs`` +
``parameters``) and, with ``?format=hf``, answers in its shape; see server/http/hf.py.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from bias_store.errors import CorruptTask, StoreUnavailable, VersionNotFound
from engine import InvalidInput, Prediction, UnknownTask
from server.exceptions import Forbidden, GenerationNotReached, LimitExceeded, NotReady, Overloaded, Unauthorized
from server.http.auth import GuardedRoute, require_reader, scope_of
from server.http.counting import CountedRoute, route_labels
from server.http.deps import get_services, min_generation
from server.http.errors import status_of
from server.http.hf import hf_answer, ranked, rescored
from server.http.routes.body import Handler, LimitedBodyRoute
from server.http.routes.responses import errors
from server.http.schemas import (
    Inputs,
    LabelScore,
    MultiPredictRequest,
    MultiPredictResponse,
    PredictOptions,
    PredictRequest,
    PredictResponse,
    TextPair,
)
from server.process.services import Services
from server.serving.predictor import TaskInputs, TaskResult


class ShedRoute(APIRoute):
    """While the work budget is spent, a predict request is answered 503 before its body is read."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def shed(request: Request) -> Response:
            services = getattr(request.app.state, "services", None)
            budget = services.predictor.budget if services is not None else None
            if budget is not None and budget.spent:
                # Closing the connection stops the client's upload of a body nobody reads.
                raise budget.overloaded(close=True)
            return await handler(request)

        return shed


class PredictRoute(CountedRoute, GuardedRoute, ShedRoute, LimitedBodyRoute):
    """Counted, then auth (401/403), shedding (503), the body limit and shape (413): only then is the body read."""


router = APIRouter(tags=["predict"], dependencies=[Depends(require_reader), Depends(min_generation)], route_class=PredictRoute)

ERRORS = errors(
    Unauthorized, Forbidden, UnknownTask, VersionNotFound, CorruptTask, StoreUnavailable, LimitExceeded, InvalidInput,
    RequestValidationError, Overloaded, NotReady, GenerationNotReached,
)

_VERSION_DOC = "Serve this kept version instead of the current one (404 names the kept versions)."
_FORMAT_DOC = "`hf`: answer as Hugging Face's text-classification (`[[{label, score}]]`, one list per input)."


def known_query(*names: str):
    """A dependency refusing (422) any query parameter not in ``names``: a typo like
    ``?versoin=2`` must not silently serve something else."""

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(names))
        if unknown:
            known = ", ".join(names) or "none"
            raise RequestValidationError(
                [{"type": "extra_forbidden", "loc": ("query", name), "msg": f"unknown query parameter (known: {known})"}
                 for name in unknown]
            )

    return check


def _inputs(inputs: Inputs) -> list:
    if isinstance(inputs, str):
        return [inputs]
    return [(x.text, x.text_pair) if isinstance(x, TextPair) else x for x in inputs]


def _shown(options: PredictOptions) -> int | None:
    """How many label scores each answer shows (None: all), for the answer-size check."""
    if options.k is not None:
        return options.k
    return None if options.return_all_scores else 0


def _prediction(prediction: Prediction, options: PredictOptions) -> dict:
    scores = rescored(prediction, options.function)
    best = max(scores.values()) if options.function is not None else prediction.score
    top = None
    if options.k is not None or options.return_all_scores:
        top = dict(ranked(scores, options.k))
    out = {"label": prediction.label, "score": best, "scores": top, "truncated": prediction.truncated}
    if prediction.labels is not None:
        out["labels"] = list(prediction.labels)
    return out


def _check_truncation(result: TaskResult, options: PredictOptions) -> None:
    if options.truncation:
        return
    for i, prediction in enumerate(result.predictions):
        if prediction.truncated:
            raise InvalidInput("longer than the backbone's maximum length and parameters.truncation is false", index=i)


def _result(result: TaskResult, options: PredictOptions) -> dict:
    return {"task": result.task, "version": result.version, "predictions": [_prediction(p, options) for p in result.predictions]}


async def run_predict(services: Services, request: Request, items: list[TaskInputs], options: list[PredictOptions]) -> list[TaskResult]:
    """Run the items, counting the request in the metrics whatever happens (``options``: per item, or none)."""
    started, status = time.perf_counter(), 200

    async def until_disconnected() -> None:
        # The body has been read, so receive() now only returns once the client is gone
        # (or the response was sent, and then nobody waits for this any more).
        while (await request.receive())["type"] != "http.disconnect":
            pass

    scope = scope_of(request)
    try:
        for item in items:  # outside the key's scope: answered exactly as an unknown task
            if not scope.allows(item.task):
                raise UnknownTask(item.task, [])
        results = await services.predictor.predict(items, until_disconnected)
        for result, option in zip(results, options):
            _check_truncation(result, option)
        return results
    except BaseException as exc:
        status = status_of(exc)
        raise
    finally:
        stored = services.catalog.stored  # unknown, or another tenant's task: counted as "unknown", as it answers
        known = lambda task: task in stored and scope.allows(task)  # noqa: E731
        request.state.counted = True  # here, once per task, not once by CountedRoute
        services.metrics.observe_request([i.task for i in items], status, time.perf_counter() - started, known,
                                         route_labels(request))


@router.post(
    "/predict/{task}", response_model=PredictResponse | list[list[LabelScore]], response_model_exclude_none=True, responses=ERRORS,
    summary="Predict with one task", dependencies=[Depends(known_query("format", "version", "min_generation"))],
)
async def predict_task(
    task: str, body: PredictRequest, request: Request,
    format: Literal["native", "hf"] = Query("native", description=_FORMAT_DOC),
    version: int | None = Query(None, ge=1, description=_VERSION_DOC),
    services: Services = Depends(get_services),
) -> dict | list:
    """Classify one text, a list of texts, or text pairs with `task`'s current version (or a kept `version`)."""
    (result,) = await run_predict(services, request, [TaskInputs(task, _inputs(body.inputs), _shown(body), version)], [body])
    if format == "hf":
        return hf_answer(result.predictions, body.function, body.k)
    return _result(result, body)


@router.post(
    "/predict", response_model=MultiPredictResponse, response_model_exclude_none=True, responses=ERRORS,
    summary="Predict for several tasks at once", dependencies=[Depends(known_query("min_generation"))],
)
async def predict_many(body: MultiPredictRequest, request: Request, services: Services = Depends(get_services)) -> dict:
    """Items for any mix of tasks, answered in order; all rows share the same batches."""
    items = [TaskInputs(item.task, _inputs(item.inputs), _shown(item), item.version) for item in body.items]
    results = await run_predict(services, request, items, body.items)
    return {"results": [_result(result, item) for result, item in zip(results, body.items)]}
