"""The web page for people (``/``) and an offline Swagger UI (``/docs``).

The page is three static files in ``serving/static/`` (no build step, no CDN): it posts the
chosen photos to ``/v1/predict/batch`` from the browser. Assets are served from a fixed
allow-list rather than a directory mount, so no request path ever reaches the file system.

FastAPI's own ``/docs`` loads Swagger UI from a CDN, which fails offline; the app is created
with ``docs_url=None`` and this router serves the page with the JS/CSS that the
``fastapi-offline`` package ships. Without that package it falls back to FastAPI's CDN URLs.
"""

from __future__ import annotations

import importlib.util
from functools import cache, partial
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from product_classifier.serving.errors import ApiError

STATIC_DIR = Path(__file__).with_name("static")
ASSET_PREFIX = "/ui"
SWAGGER_PREFIX = f"{ASSET_PREFIX}/swagger"
DOCS_PATH = "/docs"

# name -> media type. Anything else under /ui is a 404.
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_SWAGGER_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}

# The page runs only its own script and talks only to this origin; thumbnails are blob: URLs.
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# Our files change with the code: revalidate. Swagger's are pinned by the package version.
_NO_CACHE = {"Cache-Control": "no-cache"}
_LONG_CACHE = {"Cache-Control": "public, max-age=86400"}


@cache
def swagger_assets_dir() -> Path | None:
    """Where ``fastapi-offline`` keeps Swagger UI's files, or None when it isn't installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "static"
    if all((directory / name).is_file() for name in _SWAGGER_ASSETS):
        return directory
    return None


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} does not exist")


async def index() -> FileResponse:
    """The catalog manager's page: upload photos, read categories, export CSV."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={**_NO_CACHE, "Content-Security-Policy": _PAGE_CSP},
    )


async def asset(name: str) -> FileResponse:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise _not_found(f"{ASSET_PREFIX}/{name}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_NO_CACHE)


async def swagger_asset(name: str) -> FileResponse:
    directory = swagger_assets_dir()
    media_type = _SWAGGER_ASSETS.get(name)
    if directory is None or media_type is None:
        raise _not_found(f"{SWAGGER_PREFIX}/{name}")
    return FileResponse(directory / name, media_type=media_type, headers=_LONG_CACHE)


async def docs(request: Request) -> HTMLResponse:
    """Swagger UI for the OpenAPI schema, with local assets when they are installed."""
    app = request.app
    root = request.scope.get("root_path", "")
    page = partial(
        get_swagger_ui_html,
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - API docs",
        swagger_favicon_url=f"{root}{ASSET_PREFIX}/favicon.svg",
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    if swagger_assets_dir() is None:
        return page()  # fastapi-offline is missing: FastAPI's CDN defaults (needs internet)
    return page(
        swagger_js_url=f"{root}{SWAGGER_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_PREFIX}/swagger-ui.css",
    )


def build_ui_router() -> APIRouter:
    """``/``, ``/ui/*`` and ``/docs``; none of them appear in the OpenAPI schema."""
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/", index, methods=["GET"])
    router.add_api_route(f"{ASSET_PREFIX}/{{name}}", asset, methods=["GET"])
    router.add_api_route(f"{SWAGGER_PREFIX}/{{name}}", swagger_asset, methods=["GET"])
    router.add_api_route(DOCS_PATH, docs, methods=["GET"])
    return router
