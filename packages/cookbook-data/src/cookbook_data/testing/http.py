"""A real HTTP server on 127.0.0.1 serving test videos, for download and ingestion tests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from cookbook_data.testing.videos import VideoSet

SLOW_S = 2.0
"""How long ``/slow/...`` paths wait before answering."""


class VideoServer:
    """Routes: ``/videos/<name>.mp4`` a good synthetic video, ``/broken/<kind>.mp4`` a broken file,
    ``/cut/<name>.mp4`` announces a whole video but closes the connection halfway, ``/slow/<route>`` answers
    after :data:`SLOW_S`, anything else is a 404. Requests are counted by path and query, so a test can tag
    its URLs (``url(path, tag)``) and count only its own requests."""

    def __init__(self, routes: dict[str, bytes]) -> None:
        self.routes = routes
        self.hits: Counter[str] = Counter()
        self.base = ""

    def url(self, path: str, tag: str) -> str:
        return f"{self.base}{path}?t={tag}"

    def hits_for(self, url: str) -> int:
        parsed = urlparse(url)
        return self.hits[f"{parsed.path}?{parsed.query}"]


@contextmanager
def serve_videos(videos: VideoSet) -> Iterator[VideoServer]:
    """Serve ``videos`` until the block ends."""
    routes = {f"/videos/{name}.mp4": video.path.read_bytes() for name, video in videos.good.items()}
    routes |= {f"/broken/{kind}.mp4": path.read_bytes() for kind, path in videos.broken.items()}
    state = VideoServer(routes)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] += 1
            path = urlparse(self.path).path
            if path.startswith("/slow/"):
                time.sleep(SLOW_S)
                path = path.removeprefix("/slow")
            cut = path.startswith("/cut/")
            body = routes.get(path.replace("/cut/", "/videos/", 1))
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut else body)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
