"""The Hugging Face text-classification shape: its parameters in, ``[[{label, score}]]`` out.

``huggingface_hub.InferenceClient(base_url=".../predict/<task>?format=hf").text_classification``
posts ``{"inputs": text, "parameters": {"top_k", "function_to_apply"}}`` and reads the first
element of a list of lists; pipelines also send ``truncation``. The routes stay native;
this module only re-scores and reshapes the engine's predictions.
"""

from __future__ import annotations

import math

from engine import Prediction


def _softmax(logits: tuple[float, ...]) -> list[float]:
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def _sigmoid(x: float) -> float:
    # Split by sign so that exp never overflows.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def rescored(prediction: Prediction, function: str | None) -> dict[str, float]:
    """Label -> score under ``function`` ("softmax", "sigmoid", "none").

    None keeps the task's own scores, which are what HF's pipeline defaults to as well:
    softmax for single-label, sigmoid for multi-label, the raw value for regression.
    """
    if function is None:
        return prediction.scores
    labels = list(prediction.scores)
    if function == "softmax":
        values = _softmax(prediction.logits)
    elif function == "sigmoid":
        values = [_sigmoid(x) for x in prediction.logits]
    else:
        values = list(prediction.logits)
    return dict(zip(labels, values))


def ranked(scores: dict[str, float], top_k: int | None) -> list[tuple[str, float]]:
    """Best first, cut to ``top_k`` (None: every label)."""
    order = sorted(scores.items(), key=lambda kv: -kv[1])
    return order[:top_k] if top_k is not None else order


def hf_answer(predictions: list[Prediction], function: str | None, top_k: int | None) -> list[list[dict]]:
    """One ``[{label, score}, ...]`` list per input, best first (HF's text-classification output)."""
    return [[{"label": label, "score": score} for label, score in ranked(rescored(p, function), top_k)] for p in predictions]
