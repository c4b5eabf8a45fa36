"""The OpenAI-client backend sends each conversation as a chat completion to a real HTTP server on 127.0.0.1
(a tiny OpenAI-compatible server defined here that records request bodies and answers with canned
completions) and returns the answers in input order."""

import inspect
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cookbook_data.prompts import load_prompt
from cookbook_data.schemas import (
    AssistantMessage,
    Conversation,
    ImagePart,
    SystemMessage,
    TextPart,
    UserMessage,
    VideoPart,
)
from cookbook_data.testing import VideoSet
from cookbook_data.video import VisionSettings
from cookbook_infer.backends.base import Backend, Generation, SamplingSettings
from cookbook_infer.backends.openai_client import OpenAIClientBackend, ServerError

MODEL = "nvidia/Cosmos-Reason2-8B"


@dataclass
class Reply:
    """What the server answers to one request."""

    text: str | None = "<answer>4</answer>"
    completion_tokens: int = 5
    status: int = 200
    delay_s: float = 0.0
    usage: bool = True
    finish_reason: str = "stop"


def last_text(body: dict[str, Any]) -> str:
    """The text of the last message of a recorded request."""
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else next(p["text"] for p in content if p["type"] == "text")


@dataclass
class ChatServer:
    """Records every request (path, headers, JSON body) and answers with ``reply(body)``."""

    reply: Callable[[dict[str, Any]], Reply] = lambda body: Reply()
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    base_url: str = ""
    in_flight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, _, body in self.requests]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    state = ChatServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append((self.path, dict(self.headers), body))
                state.in_flight += 1
                state.peak = max(state.peak, state.in_flight)
            reply = state.reply(body)
            time.sleep(reply.delay_s)
            with state.lock:
                state.in_flight -= 1
            if reply.status != 200:
                payload: dict[str, Any] = {
                    "object": "error",
                    "message": f"cannot load video for {last_text(body)!r}",
                    "type": "BadRequestError",
                    "code": reply.status,
                }
            else:
                payload = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply.text},
                            "finish_reason": reply.finish_reason,
                        }
                    ],
                }
                if reply.usage:
                    payload["usage"] = {
                        "prompt_tokens": 100,
                        "completion_tokens": reply.completion_tokens,
                        "total_tokens": 100 + reply.completion_tokens,
                    }
            data = json.dumps(payload).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout test)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def backend_for(server: ChatServer, **options: Any) -> OpenAIClientBackend:
    return OpenAIClientBackend(MODEL, base_url=server.base_url, max_retries=0, **options)


def asking(text: str, video: str | None = None, **settings: Any) -> Conversation:
    parts: list[TextPart | ImagePart | VideoPart] = [TextPart(text=text)]
    if video is not None:
        parts.insert(0, VideoPart(video=video, **settings))
    return Conversation(messages=[UserMessage(content=parts)])


def test_the_request_body_is_the_conversation_in_openai_form(server: ChatServer) -> None:
    conversation = Conversation(
        messages=[
            SystemMessage(content="You are a helpful assistant."),
            UserMessage(
                content=[
                    VideoPart(video="/data/clips/a b.mp4", fps=4, total_pixels=8192 * 28 * 28, max_frames=64),
                    TextPart(text="Does this video adhere to the physical laws?"),
                ]
            ),
        ]
    )
    sampling = SamplingSettings(max_new_tokens=64, temperature=0.6, top_p=0.95, top_k=20, seed=3)
    backend = backend_for(server, api_key="secret")
    assert backend.generate([conversation], sampling) == [Generation("<answer>4</answer>", 5, num_prompt_tokens=100)]

    [(path, headers, body)] = server.requests
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer secret"
    assert body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": "file:///data/clips/a%20b.mp4"}},
                    {"type": "text", "text": "Does this video adhere to the physical laws?"},
                ],
            },
        ],
        "max_tokens": 64,
        "temperature": 0.6,
        "top_p": 0.95,
        "presence_penalty": 0.0,
        "seed": 3,
        "top_k": 20,
        "mm_processor_kwargs": {"fps": 4.0, "max_frames": 64, "total_pixels": 8192 * 28 * 28},
    }


def test_greedy_text_only_requests_turn_top_k_off_and_omit_an_unset_seed(server: ChatServer) -> None:
    conversation = Conversation(
        messages=[
            UserMessage(content="Say hello."),
            AssistantMessage(content="Hello."),
            UserMessage(content=[TextPart(text="Again.")]),
        ]
    )
    backend_for(server).generate([conversation], SamplingSettings(max_new_tokens=8, seed=None))
    [body] = server.bodies
    assert body == {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Again."}]},
        ],
        "max_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
        "presence_penalty": 0.0,
        "top_k": -1,
    }


def test_each_request_of_a_batch_gets_its_own_seed(server: ChatServer) -> None:
    same = [asking(f"copy {i}", "/data/clips/a.mp4") for i in range(3)]  # a scorer's samples of one prompt
    backend_for(server).generate(same, SamplingSettings(temperature=0.6, seed=7))
    assert sorted((last_text(body), body["seed"]) for body in server.bodies) == [
        ("copy 0", 7),
        ("copy 1", 8),
        ("copy 2", 9),
    ]


def test_media_locations_become_urls_the_server_can_fetch(
    server: ChatServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    conversations = [
        asking("remote", "https://example.com/v/clip.mp4?sig=1"),
        asking("relative", "clips/b.mp4"),
        asking("file url", "file:///srv/c.mp4"),
        Conversation(messages=[UserMessage(content=[ImagePart(image="/data/frame.png"), TextPart(text="image")])]),
    ]
    backend_for(server).generate(conversations, SamplingSettings())
    urls = [
        next(p[f"{p['type']}"]["url"] for p in body["messages"][0]["content"] if p["type"] != "text")
        for body in server.bodies
    ]
    assert sorted(urls) == sorted(
        [
            "https://example.com/v/clip.mp4?sig=1",
            (tmp_path / "clips" / "b.mp4").as_uri(),
            "file:///srv/c.mp4",
            "file:///data/frame.png",
        ]
    )
    image_body = next(b for b in server.bodies if last_text(b) == "image")
    assert image_body["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "file:///data/frame.png"},
    }
    assert "mm_processor_kwargs" not in image_body


def test_a_published_prompt_sends_its_video_and_vision_settings(server: ChatServer, synthetic_videos: VideoSet) -> None:
    video = synthetic_videos.good["h264_24fps"].path
    template = load_prompt("reason2_videophy2_critic")
    conversation = template.conversation([VisionSettings(fps=4).video_part(str(video))])
    backend_for(server).generate([conversation], SamplingSettings())
    [body] = server.bodies
    system, user = body["messages"]
    assert system == {"role": "system", "content": "You are a helpful assistant."}
    assert user["content"][0] == {"type": "video_url", "video_url": {"url": video.as_uri()}}
    assert user["content"][1]["text"] == conversation.to_messages()[1]["content"][1]["text"]
    assert body["mm_processor_kwargs"] == {"fps": 4.0, "min_frames": 4, "max_frames": 768}


def test_requests_run_concurrently_and_results_keep_input_order(server: ChatServer) -> None:
    # Earlier items take longer, so answers arrive in reverse order.
    server.reply = lambda body: Reply(
        text=f"answer to {last_text(body)}",
        completion_tokens=int(last_text(body)) + 1,
        delay_s=0.1 * (6 - int(last_text(body))),
    )
    conversations = [asking(str(i)) for i in range(6)]
    began = time.perf_counter()
    generations = backend_for(server, max_concurrency=3).generate(conversations, SamplingSettings())
    elapsed = time.perf_counter() - began
    assert generations == [Generation(f"answer to {i}", i + 1, num_prompt_tokens=100) for i in range(6)]
    assert server.peak == 3
    assert elapsed < 0.1 * sum(range(1, 7))  # 2.1 s one by one


def test_one_request_at_a_time_when_concurrency_is_one(server: ChatServer) -> None:
    server.reply = lambda body: Reply(delay_s=0.05)
    backend_for(server, max_concurrency=1).generate([asking(str(i)) for i in range(4)], SamplingSettings())
    assert server.peak == 1
    assert [last_text(b) for b in server.bodies] == ["0", "1", "2", "3"]


def test_a_failing_item_raises_naming_the_server_and_the_item(server: ChatServer) -> None:
    server.reply = lambda body: Reply(status=400) if last_text(body) == "bad" else Reply()
    conversations = [asking("fine", "/data/a.mp4"), asking("bad", "/data/b.mp4"), asking("fine too")]
    with pytest.raises(ServerError) as raised:
        backend_for(server).generate(conversations, SamplingSettings())
    message = str(raised.value)
    assert message.startswith(f"{server.base_url}: chat completion for item 1 (/data/b.mp4) failed: BadRequestError")
    assert "cannot load video for 'bad'" in message


def test_after_a_failure_the_requests_not_yet_sent_are_skipped(server: ChatServer) -> None:
    # Item 0 is slow and fine, item 1 fails at once: items 2 and 3 are never sent, and the error is item 1's.
    server.reply = lambda body: Reply(delay_s=0.3) if last_text(body) == "0" else Reply(status=400)
    with pytest.raises(ServerError, match=r"item 1 failed: BadRequestError"):
        backend_for(server, max_concurrency=2).generate([asking(str(i)) for i in range(4)], SamplingSettings())
    assert sorted(last_text(b) for b in server.bodies) == ["0", "1"]


def test_an_unreachable_server_is_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    backend = OpenAIClientBackend(MODEL, base_url=base_url, max_retries=0)
    with pytest.raises(ServerError, match=rf"^{base_url}: chat completion for item 0 failed: APIConnectionError"):
        backend.generate([asking("hello")], SamplingSettings())


def test_a_slow_server_times_out(server: ChatServer) -> None:
    server.reply = lambda body: Reply(delay_s=1.0)
    with pytest.raises(ServerError, match=r"item 0 failed: APITimeoutError"):
        backend_for(server, timeout_s=0.2).generate([asking("hello")], SamplingSettings())


def test_an_answer_without_usage_is_an_error_and_empty_content_is_empty_text(server: ChatServer) -> None:
    server.reply = lambda body: Reply(usage=last_text(body) != "no usage", text=None, completion_tokens=1)
    backend = backend_for(server)
    assert backend.generate([asking("empty")], SamplingSettings()) == [Generation("", 1, num_prompt_tokens=100)]
    with pytest.raises(ServerError, match=r"the answer for item 0 has no usage"):
        backend.generate([asking("no usage")], SamplingSettings())


def test_settings_that_cannot_be_sent_are_refused_before_any_request(server: ChatServer) -> None:
    mixed = Conversation(
        messages=[
            UserMessage(
                content=[VideoPart(video="/a.mp4", fps=4), VideoPart(video="/b.mp4", fps=2), TextPart(text="?")]
            )
        ]
    )
    sized_image = Conversation(messages=[UserMessage(content=[ImagePart(image="/a.png", max_pixels=1024)])])
    backend = backend_for(server)
    with pytest.raises(ValueError, match="different vision settings"):
        backend.generate([asking("fine"), mixed], SamplingSettings())
    with pytest.raises(ValueError, match=r"/a\.png: image pixel bounds cannot be sent"):
        backend.generate([sized_image], SamplingSettings())
    assert server.requests == []


def test_an_answer_the_token_limit_cut_off_is_truncated(server: ChatServer) -> None:
    server.reply = lambda body: Reply(finish_reason="length" if last_text(body) == "long" else "stop")
    generations = backend_for(server).generate([asking("long"), asking("short")], SamplingSettings())
    assert [generation.truncated for generation in generations] == [True, False]


def test_no_conversations_no_requests(server: ChatServer) -> None:
    assert backend_for(server).generate([], SamplingSettings()) == []
    assert server.requests == []


def test_the_backend_satisfies_the_backend_protocol(server: ChatServer) -> None:
    backend: Backend = backend_for(server)  # checked by mypy: a mismatch is a type error
    assert backend.model_id == MODEL
    assert inspect.signature(type(backend).generate) == inspect.signature(Backend.generate)
