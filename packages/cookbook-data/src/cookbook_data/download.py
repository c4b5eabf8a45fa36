"""Downloading videos into a cache keyed by URL, so a file can never end up under another row's labels.

The published VideoPhy-2 downloader named cached files by row index; once rows were filtered or balanced,
index ``i`` pointed at a different video than the one that had been saved as ``i`` and labels were attached
to the wrong videos. Here a cached file's name is derived from its URL alone, so the same URL always maps
to the same file whatever the order, filtering or split of the rows that name it.

A download is accepted only whole and decodable: bytes go to a temporary file in the cache folder, the
byte count is checked against ``Content-Length``, the file is probed with :func:`cookbook_data.video.probe`,
and only then is it renamed into place with :func:`os.replace` (atomic on one file system). A failure of
any kind deletes the temporary file and raises an error naming the URL, so the cache never holds a partial
or undecodable file under a final name. Only the standard library is used for HTTP.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import secrets
import threading
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import urlparse

from cookbook_data.video import VideoDecodeError, probe

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
"""File name endings recognised as videos (compared in lower case), wherever a folder is searched for videos."""
DEFAULT_SUFFIX = ".mp4"
"""Ending given to a cached file whose URL does not end in a known video suffix."""
_CHUNK = 1 << 20
_USER_AGENT = "cookbook-data"


class DownloadError(RuntimeError):
    """A URL that could not be fetched whole; the message names the URL and the cause."""


class UndecodableVideoError(DownloadError):
    """A URL that was fetched whole but whose content is not a decodable video; nothing was kept."""


def url_digest(url: str) -> str:
    """SHA-256 of the URL (hex): the key of its cached file and the basis of ids derived from URLs."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def cache_name(url: str) -> str:
    """File name of ``url`` in a cache: its digest plus the URL's video suffix (``.mp4`` when it has none)."""
    suffix = PurePosixPath(urlparse(url).path).suffix.lower()
    return url_digest(url) + (suffix if suffix in VIDEO_SUFFIXES else DEFAULT_SUFFIX)


def _check_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DownloadError(f"{url!r}: not an http(s) URL")


def download(url: str, dest: str | os.PathLike[str], *, timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest`` all or nothing, and accept it only if it decodes as a video.

    ``timeout_s`` bounds the wait for the connection and for each read. Raises :class:`DownloadError`
    (HTTP error, network failure, timeout, connection closed early) or :class:`UndecodableVideoError`;
    in both cases neither ``dest`` nor a temporary file is left behind. An existing ``dest`` is replaced
    only by a complete, decodable download.
    """
    _check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_partial(dest)
    try:
        with os.fdopen(fd, "wb") as handle:
            _fetch_into(url, handle, timeout_s)
        try:
            probe(tmp)
        except VideoDecodeError as error:
            reason = str(error).removeprefix(f"{tmp}: ")
            raise UndecodableVideoError(f"{url}: downloaded content is not a decodable video ({reason})") from None
        tmp.replace(dest)  # os.replace: atomic, so `dest` is either absent or whole
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest


def _new_partial(dest: Path) -> tuple[int, Path]:
    """A new hidden temporary file beside ``dest``, open for writing, and its path.

    It is created with mode 0o666 less the umask, as any file a program writes, not ``mkstemp``'s 0o600: the
    cached video is this file renamed, and a cache shared by several users or containers must stay readable
    by all of them. The kernel applies the umask, so it is never read (reading it means changing it, which
    races with other threads)."""
    while True:
        tmp = dest.with_name(f".{dest.stem}.{secrets.token_hex(8)}.part{dest.suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _fetch_into(url: str, out: BinaryIO, timeout_s: float) -> None:
    """Stream the body of ``url`` into ``out``, checking that it arrived whole."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    received = 0
    expected: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None and length.isdigit() else None
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DownloadError(f"{url}: {error.reason}") from None
    except TimeoutError:
        raise DownloadError(f"{url}: no data within {timeout_s} s (timed out)") from None
    except (OSError, http.client.HTTPException) as error:  # connection reset, incomplete chunked body, ...
        raise DownloadError(f"{url}: {type(error).__name__}: {error}") from None
    if expected is not None and received != expected:
        raise DownloadError(f"{url}: connection closed after {received} of {expected} bytes")
    if received == 0:
        raise DownloadError(f"{url}: empty response body")


class VideoCache:
    """A folder of downloaded videos, one file per URL, reused across runs and shared by any rows.

    Safe to use from many threads: concurrent requests for the same URL download it once, the others
    wait and reuse the file. A cached file is reused only if it still probes as a video; otherwise it is
    downloaded again.
    """

    def __init__(self, root: str | os.PathLike[str], *, timeout_s: float = 60.0) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def path_for(self, url: str) -> Path:
        """Where ``url`` is (or will be) cached; depends on the URL only."""
        return self.root / cache_name(url)

    def _lock(self, url: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(url, threading.Lock())

    def fetch(self, url: str) -> Path:
        """The cached file of ``url``, downloading it first unless a decodable copy is already there."""
        _check_url(url)
        path = self.path_for(url)
        with self._lock(url):
            if path.is_file():
                try:
                    probe(path)
                    return path
                except VideoDecodeError:
                    pass  # a damaged copy (e.g. edited by hand): replace it
            return download(url, path, timeout_s=self.timeout_s)
