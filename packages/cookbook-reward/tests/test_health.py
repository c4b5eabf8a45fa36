import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cookbook_reward.health import ADDRESS_FILE_ENV, address_noted, check_health, local_url


def test_wildcard_hosts_are_reached_on_the_loopback_address() -> None:
    assert local_url("0.0.0.0", 8100) == "http://127.0.0.1:8100"
    assert local_url("::", 8100) == "http://[::1]:8100"
    assert local_url("10.0.0.7", 9000) == "http://10.0.0.7:9000"
    assert local_url("fd00::7", 9000) == "http://[fd00::7]:9000"


def test_the_address_file_lives_as_long_as_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = tmp_path / "run" / "reward.url"
    monkeypatch.setenv(ADDRESS_FILE_ENV, str(address))
    with address_noted("0.0.0.0", 8123) as url:
        assert url == "http://127.0.0.1:8123"
        assert address.read_text() == url + "\n"
        assert [p.name for p in address.parent.iterdir()] == ["reward.url"]  # no partial file left
    assert not address.exists()

    monkeypatch.delenv(ADDRESS_FILE_ENV)
    with address_noted("127.0.0.1", 8123) as url:
        assert url == "http://127.0.0.1:8123"
    assert not address.exists()


def test_an_unwritable_address_file_warns_and_the_service_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(ADDRESS_FILE_ENV, str(blocker / "reward.url"))  # its folder would be a file
    with caplog.at_level(logging.WARNING), address_noted("127.0.0.1", 8123) as url:
        assert url == "http://127.0.0.1:8123"
    assert "cannot write the service's URL" in caplog.text
    assert str(blocker / "reward.url") in caplog.text


@contextmanager
def answering(status: int) -> Iterator[str]:
    """A server on 127.0.0.1 answering every GET with ``status``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_check_asks_healthz_at_the_noted_url(tmp_path: Path) -> None:
    address = tmp_path / "reward.url"
    healthy, why = check_health(address, 2.0)
    assert healthy and "no reward service runs here" in why

    with answering(200) as url:
        address.write_text(url + "\n")
        assert check_health(address, 2.0) == (True, f"{url}/healthz: HTTP 200")
    with answering(503) as url:
        address.write_text(url + "\n")
        healthy, why = check_health(address, 2.0)
        assert not healthy and why.startswith(f"{url}/healthz: ")
        assert "Service Unavailable" in why


@pytest.mark.parametrize("content", ["", "\n", "localhost:8100", "garbage\x00"])
def test_an_address_file_without_a_url_is_unhealthy_not_a_crash(tmp_path: Path, content: str) -> None:
    address = tmp_path / "reward.url"
    address.write_text(content)
    healthy, why = check_health(address, 2.0)
    assert not healthy
    assert why.startswith(f"{address}: holds ") and "not the service's URL" in why
