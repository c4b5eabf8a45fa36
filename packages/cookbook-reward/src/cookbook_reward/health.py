"""Where a running reward service listens, for a health check that was not told its port.

A container's health check is fixed when the image is built, but the port is chosen when ``serve`` starts
(``--port``, a TOML file, ``--set``). So ``serve`` writes its URL to the file that ``$COOKBOOK_REWARD_ADDRESS_FILE``
names from the end of its startup until it stops, and ``cookbook-reward healthcheck`` asks ``GET /healthz``
there. No file means no service in this container (a batch job, or a service still loading its model or starting
its prepare workers, which could not answer yet), which is not a failure.
Standard library only: the check runs every few seconds and should start fast.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ADDRESS_FILE_ENV = "COOKBOOK_REWARD_ADDRESS_FILE"

logger = logging.getLogger(__name__)


def local_url(host: str, port: int) -> str:
    """The URL a process on this machine reaches a server bound to ``host:port`` at (the wildcard addresses by
    the loopback address of their family)."""
    connect = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{connect}]:{port}" if ":" in connect else f"http://{connect}:{port}"


@contextmanager
def address_noted(host: str, port: int) -> Iterator[str]:
    """For the duration of the block, the service's URL in the file ``$COOKBOOK_REWARD_ADDRESS_FILE`` names
    (when it is set); yields the URL."""
    url = local_url(host, port)
    target = os.environ.get(ADDRESS_FILE_ENV)
    noted = Path(target) if target and _write_whole(Path(target), url + "\n") else None
    try:
        yield url
    finally:
        if noted is not None:
            noted.unlink(missing_ok=True)


def _write_whole(path: Path, text: str) -> bool:
    """Write ``text`` beside ``path`` and rename it into place (a reader never sees half of it); False, with a
    warning, where it cannot be written: the service matters more than its health check, so it serves on."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text)
        partial.replace(path)
    except OSError as error:
        logger.warning("%s: cannot write the service's URL (%s); a health check will not find it", path, error)
        return False
    return True


def check_health(address_file: Path, timeout_s: float) -> tuple[bool, str]:
    """(healthy, why): the service named in ``address_file`` answers ``GET /healthz`` with 200 within
    ``timeout_s``; healthy too when there is no such file (no service runs here)."""
    try:
        noted = address_file.read_text().strip()
    except FileNotFoundError:  # also when the service removed it as it stopped, just now
        return True, f"no reward service runs here ({address_file} does not exist)"
    except OSError as error:
        return False, f"{address_file}: cannot be read ({error})"
    if not noted.startswith(("http://", "https://")):
        return False, f"{address_file}: holds {noted[:100]!r}, not the service's URL"
    url = noted + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except (urllib.error.URLError, OSError, ValueError) as error:
        return False, f"{url}: {getattr(error, 'reason', error)}"
    return status == 200, f"{url}: HTTP {status}"
