"""Error answers shared by the routers' OpenAPI descriptions (the bodies come from server/errors.py)."""

from __future__ import annotations

from server.schemas import ErrorBody

_DESCRIPTIONS = {
    401: "No API key (`Authorization: Bearer <key>`) where one is required.",
    403: "The API key is not valid for this endpoint.",
    404: "Unknown task (the known tasks are hinted) or version.",
    409: "The bias set was trained for another backbone (fingerprint mismatch).",
    413: "Over a limit: inputs per request, characters per input or upload size (the setting is named).",
    422: "Malformed JSON, wrong types, invalid input or an invalid bias set (the validator's reason).",
    503: "Overloaded (the batch queue is full) or not ready; see Retry-After.",
}


def errors(*statuses: int) -> dict[int, dict]:
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


ERRORS = errors(401, 403, 404, 413, 422, 503)
