"""The web dashboard: one page and its bundled assets, served as they are (no build step).

The page itself needs no token: it holds no data. Everything it shows comes from the
management API, called with the Bearer token the person signs in with.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(include_in_schema=False)

ASSETS = Path(__file__).resolve().parent / "dashboard"
#: Explicit types: a module script must be served as JavaScript, whatever the host's
#: mime.types says.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: The page loads nothing from elsewhere and runs no inline script or style: say so, so that a
#: browser refuses anything injected.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Assets change with the installed version; revalidate rather than serve a stale page.
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> FileResponse:
    path = ASSETS / name
    media_type = MEDIA_TYPES.get(path.suffix)
    # Only the bundled files, by plain name: no paths, no other types.
    if "/" in name or name.startswith(".") or media_type is None or not path.is_file():
        raise HTTPException(404, f"the dashboard has no file {name!r}")
    return FileResponse(path, media_type=media_type, headers=HEADERS)


@router.get("/")
def root() -> RedirectResponse:
    """The dashboard is the server's front page."""
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/dashboard")
def dashboard_without_slash() -> RedirectResponse:
    # Relative asset URLs in the page resolve against /dashboard/.
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/dashboard/")
def dashboard() -> FileResponse:
    """The single-page dashboard (its routes live after the ``#``)."""
    return _asset("index.html")


@router.get("/dashboard/{name}")
def dashboard_asset(name: str) -> FileResponse:
    """A bundled script, stylesheet or icon of the dashboard."""
    return _asset(name)
