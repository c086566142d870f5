"""The web page at `/` (static files in api/web/, no build step) and Swagger UI at `/docs` from local assets.

Both work offline: nothing is fetched from a CDN. The page talks only to the public HTTP API, with the key the
user pastes, exactly as any other client does.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
WEB_ASSETS = "/web"
DOCS_ASSETS = "/docs-assets"
# The page loads its own scripts and styles only; results and samples are fetched with the key and shown as
# blob: URLs. This also keeps any future edit from quietly pulling a CDN script in.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def web_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP})


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="AnimeGAN job service: API docs",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
    )


def install_web(app: FastAPI) -> None:
    """Mount the page, its assets and the local Swagger UI; call with docs_url=None and redoc_url=None."""
    # Swagger UI 5 (OpenAPI 3.1, which FastAPI emits) from the swagger-ui-bundle-v2 wheel, served locally.
    from swagger_ui_bundle import swagger_ui_path

    app.include_router(router)
    app.mount(WEB_ASSETS, StaticFiles(directory=WEB_DIR), name="web")
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
