"""GET /ui: the web console, static files from the package calling the public API (docs/CONSOLE.md).

The page is plain ES modules and one stylesheet (server/http/console/), no build step, no
CDN. Every answer under /ui carries a strict Content-Security-Policy: scripts and styles
from this origin only (no inline script or style), no frames, no plugins, and fetch()
only to this server, so a hostile task label that slipped past the page's own escaping
still could not run or send anything anywhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

ROOT = Path(__file__).resolve().parent.parent / "console"
ASSETS = "/ui/assets"

# img-src blob: the job's PNGs, fetched with the key and shown from a blob URL.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # The files change with the package only; revalidated by ETag, so an upgrade shows at once.
    "Cache-Control": "no-cache",
}


def secured(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


class ConsoleFiles(StaticFiles):
    """The console's assets, each answer with the console's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        return secured(await super().get_response(path, scope))


def add_console(app: FastAPI) -> None:
    """Serve the console at /ui (and /ui/), its modules and stylesheet under /ui/assets."""
    app.mount(ASSETS, ConsoleFiles(directory=ROOT / "assets"), name="console")

    async def page() -> Response:
        return secured(FileResponse(ROOT / "index.html", media_type="text/html; charset=utf-8"))

    for path in ("/ui", "/ui/"):
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
