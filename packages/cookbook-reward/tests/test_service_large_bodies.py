"""How the reward service reads request bodies: off its event loop (an upload's base64 runs to hundreds of MiB),
refused as FastAPI refuses a body, and described in the OpenAPI schema. Run for real on 127.0.0.1 with the
trajectory scorer, which needs no model."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from cookbook_infer.testing.servers import serving_app
from cookbook_reward.config import RewardServiceSettings, ScorerConfig
from cookbook_reward.protocol import RewardRequest
from cookbook_reward.scorers import build_scorer
from cookbook_reward.service import create_app
from cookbook_reward.testing import straight_drive

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "content-type": "application/json"}
AUTH_LINE = f"Authorization: Bearer {TOKEN}\r\n".encode()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "clip.mp4").write_bytes(b"the trajectory scorer reads the waypoints, not the video")
    return root


@pytest.fixture(scope="module")
def url(media: Path) -> Iterator[str]:
    scorer = build_scorer(ScorerConfig(scorer="trajectory"), Path("/"))
    settings = RewardServiceSettings(media_roots=[media], token=TOKEN)
    with serving_app(create_app(scorer, settings)) as served:
        yield served


def scored(media: Path) -> dict[str, Any]:
    """A request the trajectory scorer gives the full reward."""
    return {"items": [{"id": "steady", "video": str(media / "clip.mp4"), "trajectory": straight_drive(10.0)}]}


class HeldParser:
    """Wraps ``RewardRequest.model_validate_json``: notes whether an event loop runs where it is called, and holds
    each call until released, so that a test can send other requests while a body is being parsed."""

    def __init__(self) -> None:
        self.parse = RewardRequest.model_validate_json
        self.started = threading.Event()
        self.released = threading.Event()
        self.on_a_loop: list[bool] = []

    def __call__(self, body: bytes) -> RewardRequest:
        try:
            asyncio.get_running_loop()
            self.on_a_loop.append(True)
        except RuntimeError:
            self.on_a_loop.append(False)
        self.started.set()
        assert self.released.wait(60)
        return self.parse(body)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldParser]:
    parser = HeldParser()
    monkeypatch.setattr(RewardRequest, "model_validate_json", parser)
    try:
        yield parser
    finally:
        parser.released.set()  # a failing test must not leave the server's parse waiting


def test_health_checks_are_answered_while_a_body_is_parsed(url: str, media: Path, held: HeldParser) -> None:
    with ThreadPoolExecutor(1) as client:
        scoring = client.submit(httpx.post, f"{url}/v1/score", json=scored(media), headers=AUTH, timeout=60)
        assert held.started.wait(30), "the body was not parsed by RewardRequest.model_validate_json"
        health = httpx.get(f"{url}/healthz", timeout=30)
        parsing_when_answered = not scoring.done()
        held.released.set()
        response = scoring.result()
    assert health.json()["status"] == "ok"
    assert parsing_when_answered
    assert held.on_a_loop == [False]  # parsed on a worker thread, not the event loop's
    assert response.status_code == 200
    assert response.json()["results"][0]["reward"] == 1.0


def test_a_request_without_the_token_is_refused_before_its_body_is_parsed(url: str, held: HeldParser) -> None:
    held.released.set()
    response = httpx.post(f"{url}/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 401  # not 400: an unknown client cannot have hundreds of MiB parsed
    assert held.on_a_loop == []


def test_a_chunked_body_without_the_token_is_refused_before_it_ends(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as client:
        head = b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        client.sendall(head + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"ite\r\n')  # more would follow
        answer = client.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_a_large_body_is_read_whole(url: str, media: Path) -> None:
    # many parts, with and without a declared length: none lost or reordered on the way to the parser
    request = scored(media)
    request["items"][0]["id"] = "-".join(str(number) for number in range(1_500_000))  # 10 MiB, echoed back
    body = json.dumps(request).encode()
    declared = httpx.post(f"{url}/v1/score", content=body, headers=JSON, timeout=60)
    parts = (body[start : start + 65521] for start in range(0, len(body), 65521))
    chunked = httpx.post(f"{url}/v1/score", content=parts, headers=JSON, timeout=60)
    for response in (declared, chunked):
        assert response.status_code == 200
        result = response.json()["results"][0]
        assert (result["id"], result["reward"]) == (request["items"][0]["id"], 1.0)


def _gone_count(url: str) -> float:
    """Requests to /v1/score counted as ended by their client (499) so far."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('cookbook_reward_requests_total{endpoint="/v1/score",status="499"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(
    "head",
    [b'Content-Length: 100000\r\n\r\n{"items": [', b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"ite\r\n'],
    ids=["declared length", "chunked"],
)
def test_a_client_gone_before_its_body_ends_is_counted_as_gone_not_as_a_server_error(
    url: str, head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    before = _gone_count(url)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + AUTH_LINE + head)
        time.sleep(0.3)  # the server has read what came; then the client goes
    deadline = time.monotonic() + 10
    while _gone_count(url) == before:
        assert time.monotonic() < deadline, "the request was not counted as ended by its client"
        time.sleep(0.05)
    assert _gone_count(url) == before + 1
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


DEEP = b"[" * 250 + b"]" * 250


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"", "application/json", 400, "the request has no body (send a JSON object)"),
        (
            b"{not json",
            "application/json",
            400,
            "the body is not valid JSON: Expecting property name enclosed in double quotes at character 1",
        ),
        (b'{"items": 5}', "application/json", 400, "items: Input should be a valid list"),
        (b"[1, 2]", "application/json", 400, "the body must be a JSON object sent as application/json"),
        (
            b'{"items": [{"video": "/a.mp4"}]}',
            "text/plain",
            400,
            "the body must be a JSON object sent as application/json",
        ),
        (
            b'{"items": [{"video": "/a\xff.mp4"}]}',
            "application/json",
            400,
            "There was an error parsing the body: POST /v1/score (",
        ),
        (b'\xef\xbb\xbf{"items": [{"video": "/a.mp4"}]}', "application/json", 200, None),  # a byte-order mark
        ('{"items": [{"video": "/a.mp4"}]}'.encode("utf-16"), "application/json", 200, None),
        (b'{"items": [{"video": "/a.mp4", "trajectory": ' + DEEP + b"}]}", "application/vnd.x+json", 200, None),
    ],
    ids=["empty", "syntax", "wrong type", "not an object", "not JSON", "not UTF-8", "BOM", "UTF-16", "250 deep"],
)
def test_bodies_are_refused_and_taken_as_fastapi_did(
    url: str, body: bytes, content_type: str, status: int, message: str | None
) -> None:
    """What FastAPI's own body parameter refused or took, as it did (pydantic's JSON parser alone would refuse
    the byte-order mark, UTF-16 and nesting over 200 levels deep, and word its refusals otherwise)."""
    response = httpx.post(f"{url}/v1/score", content=body, headers={**AUTH, "content-type": content_type})
    assert response.status_code == status
    if message is None:  # taken: the item fails, as the path is outside the media folders
        assert "outside the media folders" in response.json()["results"][0]["error"]
    else:
        assert response.json()["error"]["message"].startswith(message)
        assert response.json()["error"]["status"] == status


def resolved(document: dict[str, Any], node: Any) -> Any:
    """``node`` with every ``$ref`` in it replaced by what it points to in ``document`` (KeyError if nothing)."""
    if isinstance(node, list):
        return [resolved(document, item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = document
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        return resolved(document, target)
    return {key: resolved(document, value) for key, value in node.items()}


def test_the_request_bodies_are_described_in_the_openapi_schema(url: str) -> None:
    document = httpx.get(f"{url}/openapi.json", headers=AUTH).json()
    for path, title in (("/v1/score", "RewardRequest"), ("/get_reward", "OpenRLHFRequest")):
        body = resolved(document, document["paths"][path]["post"]["requestBody"])
        assert body["required"] is True
        schema = body["content"]["application/json"]["schema"]
        assert schema["title"] == title
        assert schema["additionalProperties"] is False
    score_body = resolved(document, document["paths"]["/v1/score"]["post"]["requestBody"])
    item = score_body["content"]["application/json"]["schema"]["properties"]["items"]["items"]
    assert item["title"] == "RewardItem"
    assert {"video", "video_base64", "caption", "rule", "trajectory"} <= set(item["properties"])
