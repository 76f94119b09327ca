"""The web page routes (serving/ui.py) in-process: allow-listed assets, JSON 404s, offline /docs.

The page itself is driven in a real browser by tests/integration/test_web_ui.py.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from product_classifier.serving import ui
from product_classifier.serving.app import create_app
from product_classifier.serving.settings import ServeSettings


def get(path: str) -> httpx.Response:
    """One GET against the app without its lifespan: these routes never touch the model."""
    app = create_app(ServeSettings(model_path=Path("unused.onnx"), verify_sha256=False))

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(main())


def test_index_is_the_page_with_a_strict_csp() -> None:
    response = get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Product classifier</title>" in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # Everything the page loads is local and relative (works offline and behind a prefix).
    for url in re.findall(r'(?:src|href)="([^"]+)"', response.text):
        assert not url.startswith(("http:", "https:", "//", "/")), url
        if url.startswith("ui/"):
            assert get("/" + url).status_code == 200, url


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_are_served_with_their_type(path: str, media_type: str) -> None:
    response = get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.content == (ui.STATIC_DIR / path.rsplit("/", 1)[1]).read_bytes()


@pytest.mark.parametrize(
    "path", ["/ui/index.html", "/ui/..%2Fui.py", "/ui/nope.js", "/ui/swagger/other.js"]
)
def test_anything_else_is_a_json_404(path: str) -> None:
    response = get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_docs_use_local_swagger_assets() -> None:
    assert ui.swagger_assets_dir() is not None, "fastapi-offline is pinned in requirements"
    page = get("/docs").text
    scripts = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/ui/swagger/swagger-ui-bundle.js" in scripts
    assert "/ui/swagger/swagger-ui.css" in scripts
    assert all(s.startswith("/") for s in scripts), scripts
    js = get("/ui/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200 and b"SwaggerUIBundle" in js.content[:2000]


def test_ui_routes_stay_out_of_the_api_schema() -> None:
    paths = get("/openapi.json").json()["paths"]
    assert not any(p == "/" or p.startswith(("/ui", "/docs")) for p in paths)
