"""Every API call as data (method, path, body, safety, how to read the answer), shared by
the sync and the async client, which only differ in how they send."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitfit_client.models import PredictResult, Ready, TaskInfo, TaskPage

Inputs = str | list[str] | list[tuple[str, str]]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    safe: bool  # changes nothing on the server: may be retried after any failure (retry.py)
    parse: Callable[[Any], Any]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    timeout: float | None = None  # this call's deadline; None: the client's
    headers: dict[str, str] | None = None  # e.g. Idempotency-Key
    raw: bool = False  # parse gets the answer's bytes, not its JSON (a downloaded artifact)


def _inputs(inputs: Inputs) -> Any:
    if isinstance(inputs, str):
        return inputs
    return [{"text": x[0], "text_pair": x[1]} if isinstance(x, tuple) else x for x in inputs]


@dataclass(frozen=True)
class Options:
    """How a prediction is scored and shown (the server's ``top_k``, ``return_all_scores`` and
    Hugging Face ``parameters``)."""

    top_k: int | None = None
    return_all_scores: bool = True
    function_to_apply: str | None = None  # "softmax", "sigmoid" or "none"; None: the task's own scores
    truncation: bool | None = None  # False: an input past the backbone's length is refused (422)

    def body(self) -> dict:
        out: dict[str, Any] = {"return_all_scores": self.return_all_scores}
        if self.top_k is not None:
            out["top_k"] = self.top_k
        parameters = {k: v for k, v in (("function_to_apply", self.function_to_apply), ("truncation", self.truncation))
                      if v is not None}
        if parameters:
            out["parameters"] = parameters
        return out


def _params(version: int | None = None, min_generation: int | None = None) -> dict:
    return {k: v for k, v in (("version", version), ("min_generation", min_generation)) if v is not None}


def predict(task: str, inputs: Inputs, options: Options, version: int | None, min_generation: int | None,
            timeout: float | None) -> Call:
    body = {"inputs": _inputs(inputs), **options.body()}
    return Call("POST", f"/predict/{task}", True, PredictResult.model_validate, json=body,
                params=_params(version, min_generation), timeout=timeout)


@dataclass(frozen=True)
class Item:
    """One item of a multi-task predict."""

    task: str
    inputs: Inputs
    top_k: int | None = None
    return_all_scores: bool = True
    version: int | None = None
    function_to_apply: str | None = None
    truncation: bool | None = None


def predict_many(items: list[Item], min_generation: int | None, timeout: float | None) -> Call:
    body = {"items": [
        {"task": i.task, "inputs": _inputs(i.inputs),
         **Options(i.top_k, i.return_all_scores, i.function_to_apply, i.truncation).body(),
         **({"version": i.version} if i.version is not None else {})}
        for i in items
    ]}
    return Call("POST", "/predict", True, lambda b: [PredictResult.model_validate(r) for r in b["results"]], json=body,
                params=_params(min_generation=min_generation), timeout=timeout)


def _file(source: str | Path | bytes) -> tuple[str, bytes, str]:
    if isinstance(source, bytes):
        return ("bias_set.safetensors", source, "application/octet-stream")
    path = Path(source)
    return (path.name, path.read_bytes(), "application/octet-stream")


def _labels(allow_label_change: bool) -> dict:
    return {"allow_label_change": "true"} if allow_label_change else {}


def upload(source: str | Path | bytes, name: str | None, timeout: float | None = None, allow_label_change: bool = False) -> Call:
    return Call("POST", "/tasks", False, TaskInfo.model_validate, files={"file": _file(source)},
                data={"name": name} if name else None, params=_labels(allow_label_change), timeout=timeout)


def replace(task: str, source: str | Path | bytes, timeout: float | None = None, allow_label_change: bool = False) -> Call:
    return Call("PUT", f"/tasks/{task}", False, TaskInfo.model_validate, files={"file": _file(source)},
                params=_labels(allow_label_change), timeout=timeout)


def list_page(limit: int, cursor: str | None, prefix: str) -> Call:
    params = {"limit": limit, "prefix": prefix, **({"cursor": cursor} if cursor else {})}
    return Call("GET", "/tasks", True, TaskPage.model_validate, params=params)


def get_task(task: str) -> Call:
    return Call("GET", f"/tasks/{task}", True, TaskInfo.model_validate)


def delete_task(task: str) -> Call:
    return Call("DELETE", f"/tasks/{task}", False, lambda b: None)


def rollback(task: str, version: int | None) -> Call:
    return Call("POST", f"/tasks/{task}/rollback", False, TaskInfo.model_validate,
                json={"version": version} if version is not None else {})


def health() -> Call:
    return Call("GET", "/healthz", True, lambda b: b.get("status") == "ok")


def ready() -> Call:
    return Call("GET", "/readyz", True, Ready.model_validate)


def can_admin() -> Call:
    return Call("GET", "/auth/admin", True, lambda b: None)
