"""POST /models/{task}: the Hugging Face Inference API's path, answering in its shape.

``huggingface_hub.InferenceClient(model=f"{base}/models/{task}").text_classification(...)``
posts here, as a TEI or Inference API user would type the URL. The same request on
``/predict/{task}?format=hf`` answers the same; the native answer stays at ``/predict``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from server.http.auth import require_reader
from server.http.deps import get_services, min_generation
from server.http.hf import hf_answer
from server.http.routes.predict import ERRORS, PredictRoute, _inputs, _shown, known_query, run_predict
from server.http.schemas import LabelScore, PredictRequest
from server.process.services import Services
from server.serving.predictor import TaskInputs

router = APIRouter(
    tags=["predict"], route_class=PredictRoute,
    dependencies=[Depends(require_reader), Depends(min_generation), Depends(known_query("min_generation"))],
)


@router.post("/models/{task}", response_model=list[list[LabelScore]], responses=ERRORS,
             summary="Predict with one task, as the Hugging Face Inference API")
async def hf_models(task: str, body: PredictRequest, request: Request, services: Services = Depends(get_services)) -> list:
    """`{"inputs": ..., "parameters": {"top_k", "function_to_apply", "truncation"}}` in, one
    `[{label, score}, ...]` list per input out, best first."""
    (result,) = await run_predict(services, request, [TaskInputs(task, _inputs(body.inputs), _shown(body))], [body])
    return hf_answer(result.predictions, body.function, body.k)
