"""The web chat page: static files shipped inside the package, served at / (off with --no-ui).
The page talks to the public API only; it needs no key to load, and holds none."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"
# No inline script, nothing from elsewhere: even a reply that got past the sanitizer could not run.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page():
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


@router.get("/ui")
async def page_folder():
    return RedirectResponse("/")


def install_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
