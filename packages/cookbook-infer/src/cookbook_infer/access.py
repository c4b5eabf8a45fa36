"""What a server may read and who may ask it: media paths confined to configured folders, bearer tokens and the
files and environment variables they come from.

Shared by the OpenAI-compatible server and the reward service, so both refuse the same things the same way.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from urllib.request import url2pathname

from pydantic import AfterValidator, SecretStr


class MediaRefused(Exception):
    """A media reference the server will not read; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def local_media(reference: str, roots: Sequence[Path]) -> Path:
    """The file a reference (an absolute path or a ``file://`` URL) names, if it lies under one of ``roots``
    once symbolic links and ``..`` are resolved; otherwise :class:`MediaRefused` (400 for a malformed or
    missing file, 403 for a file outside the roots). ``roots`` must be resolved paths."""
    parsed = urlsplit(reference)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise MediaRefused(400, f"{reference}: file URLs must name a local path (file:///...)")
        path = Path(url2pathname(parsed.path))
    elif parsed.scheme in ("http", "https"):
        raise MediaRefused(
            400,
            f"{reference}: this server reads local files only (file:// URLs under its media roots); "
            "download the video next to the server and send its path",
        )
    elif parsed.scheme:
        raise MediaRefused(400, f"{reference}: unsupported URL scheme {parsed.scheme!r} (use file://)")
    else:
        path = Path(reference)
    if not path.is_absolute():
        raise MediaRefused(400, f"{reference}: media paths must be absolute")
    if not roots:
        raise MediaRefused(403, f"{path}: this server reads no local files (no media roots are configured)")
    try:  # a NUL byte or an overlong name is the caller's mistake, not the server's
        resolved = path.resolve()
        inside = any(resolved.is_relative_to(root) for root in roots)
        found = inside and resolved.is_file()
    except (ValueError, OSError) as error:
        raise MediaRefused(400, f"{reference!r}: not a usable path ({error})") from None
    if not inside:
        raise MediaRefused(403, f"{path}: outside the media folders this server may read")
    if not found:
        raise MediaRefused(400, f"{path}: no such file")
    return resolved


def _trimmed(token: SecretStr) -> SecretStr:
    text = token.get_secret_value().strip()
    if not text:
        raise ValueError("the token is empty (an empty token file?): give one, or none to leave the server open")
    return SecretStr(text)


BearerToken = Annotated[SecretStr, AfterValidator(_trimmed)]
"""A token a server requires of its callers, without surrounding whitespace: a token read from a file, or from
an environment variable made from one (a Kubernetes secret), often ends in a newline that no client sends in its
``Authorization`` header, so kept it would refuse every request. A blank one is refused: it would admit any
request whose header is a bare ``Bearer``."""


def bearer_token_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant time (never for a
    blank ``token``)."""
    scheme, _, given = (authorization or "").partition(" ")
    return (
        bool(token.strip())
        and scheme.lower() == "bearer"
        and secrets.compare_digest(given.strip().encode(), token.encode())
    )


def read_token_file(path: Path) -> str:
    """The token (or API key) ``path`` holds, without the newline a file ends in (sent, it would fail every
    request). An empty file is refused, naming it: a server would otherwise start open, a client keyless."""
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path}: the file is empty (it should hold the token)")
    return token


def service_token(env: str, file: Path | None) -> str | None:
    """The token a service requires: the environment variable ``env`` when it is set and not empty, else the one
    in ``file`` (a service's environment wins over its options); None leaves the service open."""
    return os.environ.get(env) or (read_token_file(file) if file is not None else None)
