"""The OpenAPI document states this server's input limits (they are settings, not constants).

Schema-driven clients (and Schemathesis) then send requests within the limits instead of
requests that get 413: every ``inputs`` array gets ``maxItems``, every text ``maxLength``,
and the multi-task ``items`` array ``maxItems``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.process.settings import Settings


def declare_limits(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` return the document with ``settings``' limits filled in."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _limit(schema.get("components", {}).get("schemas", {}), settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _limit(schemas: dict, settings: Settings) -> None:
    chars, count = settings.max_input_chars, settings.max_inputs_per_request
    for name in ("PredictRequest", "PredictItem"):
        inputs = schemas.get(name, {}).get("properties", {}).get("inputs", {})
        for choice in inputs.get("anyOf", []):
            if choice.get("type") == "string":
                choice["maxLength"] = chars
            elif choice.get("type") == "array":
                choice["maxItems"] = count
                for item in choice.get("items", {}).get("anyOf", []):
                    if item.get("type") == "string":
                        item["maxLength"] = chars
    for field in ("text", "text_pair"):
        prop = schemas.get("TextPair", {}).get("properties", {}).get(field)
        if prop is not None:
            prop["maxLength"] = chars
    items = schemas.get("MultiPredictRequest", {}).get("properties", {}).get("items")
    if items is not None:
        items["maxItems"] = count
