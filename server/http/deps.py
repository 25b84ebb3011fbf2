"""What routes depend on: the running services, as one small overridable dependency."""

from __future__ import annotations

from fastapi import Depends, Header, Query, Request

from server.exceptions import GenerationNotReached, NotReady
from server.process.services import Services


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency on its thread pool, a thread
    # hop per request for what is an attribute read.
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise NotReady("the server is starting or stopping", {"Retry-After": "1"})
    return services


_MIN_GENERATION_DOC = (
    "Answer only once this server has applied the store's change log up to this generation "
    "(the `generation` of an upload's answer): read-your-writes through any replica."
)


async def min_generation(
    services: Services = Depends(get_services),
    x_bitfit_min_generation: int | None = Header(None, ge=0, description=_MIN_GENERATION_DOC),
    min_generation: int | None = Query(None, ge=0, description=_MIN_GENERATION_DOC + " Same as the header."),
) -> None:
    wanted = max(x_bitfit_min_generation or 0, min_generation or 0)
    if wanted <= services.sync.generation.value:
        return
    timeout = services.settings.min_generation_timeout_s
    generation = services.sync.generation
    if not await generation.wait(wanted, timeout):  # holds no thread; Overloaded (503) past the waiters' bound
        raise GenerationNotReached(
            f"this server has applied the store's changes up to generation {generation.value}, "
            f"not {wanted}, after waiting {timeout:g}s (BITFIT_MIN_GENERATION_TIMEOUT_S); "
            "the store may be unreachable, see /readyz",
            {"Retry-After": "1"},
        )
