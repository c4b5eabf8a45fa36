"""Running a server (the OpenAI-compatible one, or any ASGI app) inside a test, on a free port of 127.0.0.1."""

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
