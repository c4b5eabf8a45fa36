"""Running a server (the OpenAI-compatible one, or any ASGI app) inside a test, on a free port of 127.0.0.1, and
checking its OpenAPI schema against what it answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cookbook_infer.backends.base import Backend


@contextmanager
def serving(backend: Backend, **settings: Any) -> Iterator[str]:
    """Serve ``backend`` with uvicorn in a thread until the block ends; yields the base URL (no ``/v1``).

    ``settings`` are :class:`~cookbook_infer.serve.ServeSettings` fields (the port is chosen freely).
    """
    from cookbook_infer.serve import ServeSettings, create_app

    with serving_app(create_app(backend, ServeSettings(port=0, **settings))) as url:
        yield url


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn in a thread until the block ends; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not start within 30 s")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def documented_keys(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any] | None:
    """The keys, nested, of the JSON object an OpenAPI ``document`` says ``method path`` answers with ``status``
    (None when it lists no such response): to check a schema against what the server really answers, as
    :func:`answered_keys` reads it."""
    response = document["paths"][path][method.lower()]["responses"].get(str(status))
    if response is None:
        return None
    return _schema_keys(document, response["content"]["application/json"]["schema"])


def answered_keys(body: Any) -> dict[str, Any]:
    """The keys, nested, of a JSON response's body, as :func:`documented_keys` gives those of its schema."""
    return {name: answered_keys(value) for name, value in body.items()} if isinstance(body, dict) else {}


def listed_statuses(document: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """The statuses an OpenAPI ``document`` lists for each operation, by (method, path)."""
    return {
        (method, path): sorted(operation["responses"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


def _schema_keys(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The properties of ``schema`` (``$ref`` followed), each with its own."""
    while "$ref" in schema:
        target: Any = document
        for step in schema["$ref"].removeprefix("#/").split("/"):
            target = target[step]
        schema = target
    return {name: _schema_keys(document, field) for name, field in schema.get("properties", {}).items()}
