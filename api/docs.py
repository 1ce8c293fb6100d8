"""/docs (Swagger UI) and /redoc (ReDoc), from assets installed with the package: no CDN, so
they work with no internet access. The assets come from `fastapi-standalone-docs`, whose
Swagger UI (5.x) reads OpenAPI 3.1; `swagger-ui-bundle`'s (4.x) cannot."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_ASSETS = "/docs/assets"
REDOC_ASSETS = "/redoc/assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
FAVICON = f"{REDOC_ASSETS}/logo-mini.svg"


def install(api: FastAPI) -> None:
    """Serve both pages; the app is made with `docs_url=None, redoc_url=None`."""
    assets = files("fastapi_standalone_docs") / "static"
    api.mount(SWAGGER_ASSETS, StaticFiles(directory=str(assets / "swagger")), name="swagger")
    api.mount(REDOC_ASSETS, StaticFiles(directory=str(assets / "redoc")), name="redoc")
    title = api.title
    spec = api.openapi_url or "/openapi.json"

    @api.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=spec,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=FAVICON,
        )

    @api.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @api.get("/redoc", include_in_schema=False)
    def redoc_page() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=spec,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{REDOC_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
