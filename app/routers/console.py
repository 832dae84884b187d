"""The web console: static pages (HTML, CSS, ES modules; no build step, nothing fetched from elsewhere) served
from `app/console/` at `/console/`, with `/` redirecting there. `SIAMFACE_CONSOLE=false` turns both paths off
(a 404 like any unknown path). The pages are public; everything they show comes from the API with the key the
user types, kept in the tab's sessionStorage.

Paths resolve inside the folder only, to files of the listed types; the answers carry a Content-Security-Policy
that allows nothing but this origin (and blob:/data: images for previews of the user's own photos).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

from app.deps import SettingsDep

ROOT = Path(__file__).resolve().parents[1] / "console"
INDEX = "index.html"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=()",
    "Cache-Control": "no-cache",  # revalidate: an upgraded service serves its own console at once
}

router = APIRouter(include_in_schema=False)


def console_file(path: str, root: Path = ROOT) -> Path | None:
    """The file `path` names inside `root` (the index for ""), or None: outside it, hidden, missing, or of a type
    the console does not serve."""
    base = root.resolve()
    if any(part.startswith((".", "_")) for part in Path(path).parts):
        return None
    target = (base / (path or INDEX)).resolve()
    if not target.is_relative_to(base) or not target.is_file() or target.suffix not in MEDIA_TYPES:
        return None
    return target


def _require_console(settings: SettingsDep) -> None:
    if not settings.console:
        raise HTTPException(status_code=404, detail="Not Found")


@router.api_route("/", methods=["GET", "HEAD"])
def root(settings: SettingsDep) -> RedirectResponse:
    """The service's root opens the console (relative, so it works under a reverse proxy's path prefix)."""
    _require_console(settings)
    return RedirectResponse("console/", status_code=307)


@router.api_route("/console", methods=["GET", "HEAD"])
def console_root(settings: SettingsDep) -> RedirectResponse:
    _require_console(settings)
    return RedirectResponse("console/", status_code=307)


@router.api_route("/console/{path:path}", methods=["GET", "HEAD"])
def console(settings: SettingsDep, path: str) -> FileResponse:
    _require_console(settings)
    target = console_file(path)
    if target is None:
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(target, media_type=MEDIA_TYPES[target.suffix], headers=HEADERS)
