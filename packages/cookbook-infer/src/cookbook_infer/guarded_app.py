"""FastAPI applications whose documentation asks of its callers what their endpoints ask, and describes the
refusals they answer.

FastAPI serves ``/docs``, ``/redoc`` and ``/openapi.json`` on routes of its own, which no endpoint's dependency
reaches: a server requiring a token would still describe every endpoint, field and limit to anyone. Its schema
also lists, for every route taking parameters or a body, a 422 response in its own ``HTTPValidationError``
shape, which a service answering validation problems with 400 in an error body of its own never gives, and
lists none of the refusals the service does give. Shared by the OpenAI-compatible server and the reward
service, so both guard and describe their endpoints alike. A module of its own (not :mod:`cookbook_infer.access`)
because importing FastAPI takes half a second that CLIs and configs importing ``access`` should not pay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

__all__ = ["GuardedApp", "guarded_app"]

_SCHEMA_PATH = "/openapi.json"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
"""The schemas FastAPI adds for its 422 response."""
_UNAUTHORIZED = "The `Authorization: Bearer <token>` header is missing or holds another token."


class GuardedApp(FastAPI):
    """A FastAPI application whose guarded routes need the token (when one is configured) and whose schema lists
    the refusals its routes really answer, all in the service's ``error_body``, instead of FastAPI's 422."""

    def __init__(
        self,
        authorize: Callable[[Request], Awaitable[None]],
        error_body: type[BaseModel],
        *,
        token_required: bool,
        **options: Any,
    ) -> None:
        super().__init__(openapi_url=None, docs_url=None, redoc_url=None, **options)
        self.authorize = authorize
        self.error_body = error_body
        self.token_required = token_required

    def refusals(self, refusals: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
        """A route's ``responses``: each status it refuses with (and when), answered in the error body."""
        return {status: {"model": self.error_body, "description": refusals[status]} for status in sorted(refusals)}

    def guarded(self, refusals: Mapping[int, str]) -> dict[str, Any]:
        """The keyword arguments of a route that runs ``authorize``: that dependency, and its ``refusals`` with 401
        added when a token is configured (without one, nothing answers 401)."""
        unauthorized = {401: _UNAUTHORIZED} if self.token_required else {}
        return {"dependencies": [Depends(self.authorize)], "responses": self.refusals({**refusals, **unauthorized})}

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema without the 422 responses it adds and the schemas they name: this application's
        handlers answer a request that fails validation with 400 in the service's error body, which its routes
        list."""
        if self.openapi_schema is None:
            document = super().openapi()
            removed = False
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.get("responses", {})
                    if _is_fastapi_validation(responses.get("422", {})):
                        del responses["422"]
                        removed = True
            schemas = document.get("components", {}).get("schemas", {})
            for name in _FASTAPI_VALIDATION if removed else ():
                schemas.pop(name, None)
        return super().openapi()


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    """Whether a listed response is the 422 FastAPI adds, in its ``HTTPValidationError`` shape."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith(f"/{_FASTAPI_VALIDATION[0]}"))


def guarded_app(
    authorize: Callable[[Request], Awaitable[None]],
    error_body: type[BaseModel],
    *,
    token_required: bool,
    **options: Any,
) -> GuardedApp:
    """A :class:`GuardedApp` (``options`` are FastAPI's) whose ``/docs``, ``/redoc`` and ``/openapi.json`` run
    ``authorize``, the dependency guarding its endpoints: with a token configured (``token_required``) they need
    it and are refused in the service's own error shape, without one they stay open. A browser sends no token,
    so with one the pages are refused to it too: fetch ``/openapi.json`` with the header instead."""
    app = GuardedApp(authorize, error_body, token_required=token_required, **options)
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
