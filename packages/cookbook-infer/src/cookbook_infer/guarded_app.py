"""FastAPI applications whose documentation asks of its callers what their endpoints ask.

FastAPI serves ``/docs``, ``/redoc`` and ``/openapi.json`` on routes of its own, which no endpoint's dependency
reaches: a server requiring a token would still describe every endpoint, field and limit to anyone. Shared by the
OpenAI-compatible server and the reward service, so both guard their documentation alike. A module of its own
(not :mod:`cookbook_infer.access`) because importing FastAPI takes half a second that CLIs and configs importing
``access`` should not pay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

__all__ = ["guarded_app"]

_SCHEMA_PATH = "/openapi.json"


def guarded_app(authorize: Callable[[Request], Awaitable[None]], **options: Any) -> FastAPI:
    """A FastAPI application (``options`` are FastAPI's) whose ``/docs``, ``/redoc`` and ``/openapi.json`` run
    ``authorize``, the dependency guarding its endpoints: with a token configured they need it and are refused
    in the service's own error shape, without one they stay open. A browser sends no token, so with one the
    pages are refused to it too: fetch ``/openapi.json`` with the header instead."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, **options)
    guard = [Depends(authorize)]

    @app.get(_SCHEMA_PATH, include_in_schema=False, dependencies=guard)
    async def schema(request: Request) -> JSONResponse:
        return JSONResponse(_served_from(app.openapi(), request))

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=_schema_url(request), title=f"{app.title} - Swagger UI")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url=_schema_url(request), title=f"{app.title} - ReDoc")

    return app


def _served_from(document: dict[str, Any], request: Request) -> dict[str, Any]:
    """The schema with the prefix a proxy mounts the application at listed first among its servers, as FastAPI's
    own schema route lists it, so that "Try it out" and generated clients call the endpoints through the proxy.
    A copy: the application's cached schema is the same for every prefix."""
    prefix = request.scope.get("root_path", "").rstrip("/")
    servers = document.get("servers", [])
    if not prefix or any(server.get("url") == prefix for server in servers):
        return document
    return {**document, "servers": [{"url": prefix}, *servers]}


def _schema_url(request: Request) -> str:
    """Where the page's browser finds the schema: under the prefix a proxy mounts the application at, if any."""
    prefix: str = request.scope.get("root_path", "")
    return prefix.rstrip("/") + _SCHEMA_PATH
