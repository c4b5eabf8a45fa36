"""The OpenAI-compatible server, run for real on 127.0.0.1 with tiny checkpoints, called with the openai client."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import ValidationError

from cookbook_data.records import read_records
from cookbook_data.schemas import Conversation, Prediction, SystemMessage, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_data.video import VisionSettings
from cookbook_infer.access import bearer_token_matches
from cookbook_infer.backends.base import Backend, CandidateProbabilities, Generation, SamplingSettings
from cookbook_infer.backends.transformers import TransformersBackend, model_inputs
from cookbook_infer.registry import resolve_model
from cookbook_infer.run import RunConfig, run_inference
from cookbook_infer.serve import ServeSettings, create_app
from cookbook_infer.testing import Arch
from cookbook_infer.testing.backends import FixedAnswers
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_infer.testing.servers import answered_keys, documented_keys, listed_statuses, serving

FAST = {"nframes": 2}
"""Vision settings that keep CPU generation quick."""
PROMPT = "Describe the video."


# ---------------------------------------------------------------------------------------------------------------
# Helpers


class Recorder:
    """Wraps a real backend: records every batch it is given, optionally sleeps first or tags each answer with
    its video's file name (the tiny model answers every video alike, so tags tell the answers apart)."""

    def __init__(self, backend: Backend, *, delay_s: float = 0.0, tag: bool = False) -> None:
        self.backend = backend
        self.model_id = backend.model_id
        self.delay_s = delay_s
        self.tag = tag
        self.batches: list[tuple[list[Conversation], SamplingSettings]] = []
        self.started = threading.Event()

    @property
    def sizes(self) -> list[int]:
        return [len(conversations) for conversations, _ in self.batches]

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingSettings, videos: Any = None
    ) -> list[Generation]:
        self.batches.append((list(conversations), sampling))
        self.started.set()
        time.sleep(self.delay_s)
        generations = self.backend.generate(conversations, sampling, videos)
        if not self.tag:
            return generations
        return [
            dataclasses.replace(g, text=f"{video_name(c)}: {g.text}")
            for c, g in zip(conversations, generations, strict=True)
        ]

    def next_token_probabilities(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        prefixes: Sequence[str] | None = None,
        videos: Any = None,
    ) -> list[CandidateProbabilities]:
        return self.backend.next_token_probabilities(conversations, candidates, prefixes, videos)


def video_name(conversation: Conversation) -> str:
    return Path(conversation.video_parts()[0].video).name


def conversation(video: Path, **vision: Any) -> Conversation:
    """What a request with one video and :data:`PROMPT` should become."""
    part = {"type": "video", "video": str(video.resolve()), **vision}
    return Conversation.model_validate(
        {"messages": [{"role": "user", "content": [part, {"type": "text", "text": PROMPT}]}]}
    )


def video_message(video: Path | str) -> list[dict[str, Any]]:
    url = video.resolve().as_uri() if isinstance(video, Path) else video
    return [
        {
            "role": "user",
            "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": PROMPT}],
        }
    ]


def client(url: str, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=120)


def in_threads(*calls: Any) -> list[Any]:
    """Run the calls at the same moment in threads; each result, or the exception it raised, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def backends(tiny_checkpoints: TinyCheckpoints) -> dict[Arch, TransformersBackend]:
    return {arch: TransformersBackend(str(tiny_checkpoints(arch))) for arch in ("reason1", "reason2")}


@pytest.fixture(scope="module")
def reason2(backends: dict[Arch, TransformersBackend]) -> TransformersBackend:
    return backends["reason2"]


@pytest.fixture
def media(tmp_path: Path, synthetic_videos: VideoSet) -> Path:
    """A media root with one good video, a symbolic link pointing outside it, and a private video outside it."""
    root = tmp_path / "media"
    root.mkdir()
    (root / "clip.mp4").write_bytes(synthetic_videos.good["h264_24fps"].path.read_bytes())
    private = tmp_path / "private"
    private.mkdir()
    (private / "secret.mp4").write_bytes(synthetic_videos.good["mpeg4_8fps"].path.read_bytes())
    (root / "link.mp4").symlink_to(private / "secret.mp4")
    return root


# ---------------------------------------------------------------------------------------------------------------
# Answers


@pytest.mark.parametrize("arch", ["reason1", "reason2"])
def test_a_greedy_answer_equals_direct_generation(
    arch: Arch, backends: dict[Arch, TransformersBackend], synthetic_videos: VideoSet
) -> None:
    backend = backends[arch]
    video = synthetic_videos.good["h264_30fps_long"].path
    with serving(backend, media_roots=[synthetic_videos.root]) as url:
        response = client(url).chat.completions.create(
            model=backend.model_id,
            messages=video_message(video),  # type: ignore[arg-type]
            max_tokens=4,
            temperature=0,
            extra_body={"mm_processor_kwargs": {"nframes": 4, "max_pixels": 4096}, "top_k": 20},
        )
    [expected] = backend.generate(
        [conversation(video, nframes=4, max_pixels=4096)], SamplingSettings(max_new_tokens=4, top_k=20)
    )
    assert response.choices[0].message.content == expected.text
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].finish_reason == ("length" if expected.truncated else "stop")
    assert response.object == "chat.completion"
    assert response.model == backend.model_id
    assert response.id.startswith("chatcmpl-")
    assert response.created > 0
    assert response.usage is not None
    assert response.usage.completion_tokens == expected.num_generated_tokens
    assert response.usage.prompt_tokens == expected.num_prompt_tokens and expected.num_prompt_tokens > 0
    assert response.usage.total_tokens == expected.num_prompt_tokens + expected.num_generated_tokens


def test_sampled_answers_follow_the_seed_like_direct_generation(
    reason2: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    video = synthetic_videos.good["h264_24fps"].path
    with serving(reason2, media_roots=[synthetic_videos.root], vision=VisionSettings(**FAST)) as url:
        answers = {
            seed: client(url).chat.completions.create(
                model=reason2.model_id,
                messages=video_message(video),  # type: ignore[arg-type]
                max_completion_tokens=8,
                temperature=1.5,
                seed=seed,
                extra_body={"top_k": 50},
            )
            for seed in (1, 2, 3)
        }
    for seed, response in answers.items():
        hot = SamplingSettings(max_new_tokens=8, temperature=1.5, top_k=50, seed=seed)
        [expected] = reason2.generate([conversation(video, **FAST)], hot)
        assert response.choices[0].message.content == expected.text
    assert len({response.choices[0].message.content for response in answers.values()}) > 1


def test_request_fields_become_the_backends_vision_and_sampling_settings(
    reason2: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    recorder = Recorder(reason2)
    clip = synthetic_videos.good["h264_24fps"].path
    with serving(recorder, media_roots=[synthetic_videos.root]) as url:
        api = client(url)
        api.chat.completions.create(
            model=reason2.model_id,
            messages=[
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": clip.resolve().as_uri()}},
                        {"type": "video", "video": str(clip), "fps": 1, "max_frames": 6},  # type: ignore[list-item,misc]
                        {"type": "text", "text": PROMPT},
                    ],
                },
            ],
            max_completion_tokens=3,
            temperature=0.5,
            top_p=0.9,
            presence_penalty=0.5,
            seed=11,
            extra_body={"top_k": 20, "mm_processor_kwargs": {"nframes": 4, "max_pixels": 4096}},
        )
        api.chat.completions.create(model=reason2.model_id, messages=video_message(clip))  # type: ignore[arg-type]
    [([first], first_sampling), ([second], second_sampling)] = recorder.batches
    assert first.messages[0] == SystemMessage(content="Be brief.")
    path = str(clip.resolve())
    by_kwargs, by_part = first.video_parts()
    assert by_kwargs == VisionSettings(nframes=4, max_pixels=4096).video_part(path)
    assert by_part == VisionSettings(fps=1, max_frames=6, max_pixels=4096).video_part(path)
    assert first_sampling == SamplingSettings(
        max_new_tokens=3, temperature=0.5, top_p=0.9, top_k=20, presence_penalty=0.5, seed=11
    )
    # Nothing given: the server's defaults (fps 4, greedy).
    assert second.video_parts() == [VisionSettings(fps=4).video_part(path)]
    assert second_sampling == SamplingSettings()


def test_an_answer_ending_on_its_last_allowed_token_stopped_and_one_cut_off_did_not(
    tiny_checkpoints: TinyCheckpoints,
) -> None:
    backend = TransformersBackend(str(tiny_checkpoints("reason2")))
    ask = [{"role": "user", "content": "Say hello."}]
    inputs = model_inputs(
        backend.loaded.processor, backend.model_type, [Conversation.model_validate({"messages": ask})]
    )
    config = backend.loaded.model.generation_config
    first = int(backend.loaded.model.generate(**inputs, max_new_tokens=1, do_sample=False)[0, -1])
    never = next(token for token in range(1000) if token != first)
    with serving(backend) as url:
        config.eos_token_id = first  # the model's first answer token now ends the answer
        ended = client(url).chat.completions.create(model=backend.model_id, messages=ask, max_tokens=1)  # type: ignore[arg-type]
        config.eos_token_id = never
        cut = client(url).chat.completions.create(model=backend.model_id, messages=ask, max_tokens=1)  # type: ignore[arg-type]
    assert ended.usage is not None and ended.usage.completion_tokens == 1
    assert ended.choices[0].finish_reason == "stop"
    assert cut.usage is not None and cut.usage.completion_tokens == 1
    assert cut.choices[0].finish_reason == "length"


# ---------------------------------------------------------------------------------------------------------------
# Frame rules

STRIDED = VisionSettings(max_strided_frames=4)
"""A server whose default frame rule is the reward model's (every k-th frame)."""
FRAME_RULE_CASES: dict[str, tuple[VisionSettings, dict[str, Any], dict[str, Any], VisionSettings]] = {
    # name: (the server's vision, mm_processor_kwargs, the video part's own settings, what the backend gets)
    "nframes over strided": (STRIDED, {"nframes": 2}, {}, VisionSettings(nframes=2)),
    "fps over strided": (STRIDED, {}, {"fps": 1, "max_frames": 4}, VisionSettings(fps=1, max_frames=4)),
    "strided part over fps": (
        VisionSettings(fps=4),
        {},
        {"max_strided_frames": 2},
        VisionSettings(max_strided_frames=2),
    ),
    "strided kwargs over fps": (
        VisionSettings(fps=4),
        {"max_strided_frames": 2},
        {},
        VisionSettings(max_strided_frames=2),
    ),
    "nframes part over strided kwargs": (
        VisionSettings(fps=4),
        {"max_strided_frames": 2},
        {"nframes": 2},
        VisionSettings(nframes=2),
    ),
}


@pytest.mark.parametrize("case", FRAME_RULE_CASES, ids=list(FRAME_RULE_CASES))
def test_a_frame_rule_replaces_every_weaker_frame_rule(
    case: str, reason2: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    server_vision, kwargs, own, expected = FRAME_RULE_CASES[case]
    recorder = Recorder(reason2)
    clip = synthetic_videos.good["mpeg4_10fps"].path
    part = {"type": "video", "video": str(clip), **own} if own else video_message(clip)[0]["content"][0]
    body = {
        "model": reason2.model_id,
        "messages": [{"role": "user", "content": [part, {"type": "text", "text": PROMPT}]}],
        "max_tokens": 1,
        "mm_processor_kwargs": kwargs or None,
    }
    with serving(recorder, media_roots=[synthetic_videos.root], vision=server_vision) as url:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    [([sent], _)] = recorder.batches
    assert sent.video_parts() == [expected.video_part(str(clip.resolve()))]


def test_run_through_the_server_of_the_reward_model_succeeds(
    backends: dict[Arch, TransformersBackend], synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    """The client backend sends the reward model's vision settings (max_strided_frames) as mm_processor_kwargs."""
    model = "nvidia/Cosmos-Reason1-7B-Reward"
    spec = resolve_model(model)
    recorder = Recorder(backends["reason1"])
    clip = synthetic_videos.good["mpeg4_10fps"].path
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(VideoSample(id="clip", path=str(clip)).model_dump_json() + "\n")
    with serving(recorder, model_id=model, media_roots=[synthetic_videos.root], vision=VisionSettings(fps=4)) as url:
        config = RunConfig(
            model=model,
            manifest=manifest,
            out=tmp_path / "p.jsonl",
            backend="openai",
            base_url=f"{url}/v1",
            temperature=0.0,
            max_new_tokens=2,
        )
        report = run_inference(config, progress=False)
    assert report.succeeded == 1, (tmp_path / "p.errors.jsonl").read_text()
    [prediction] = read_records(config.out, Prediction)
    assert prediction.num_generated_tokens is not None and prediction.num_generated_tokens >= 1
    [([sent], _)] = recorder.batches
    assert sent.video_parts() == [spec.vision.video_part(str(clip.resolve()))]


# ---------------------------------------------------------------------------------------------------------------
# Batching


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
    reason2: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    recorder = Recorder(reason2, tag=True)
    names = ["h264_24fps", "h264_30fps_long", "mpeg4_10fps", "mpeg4_8fps"]
    videos = [synthetic_videos.good[name].path for name in names]
    settings = {"max_batch_size": 4, "max_wait_ms": 10_000, "vision": VisionSettings(**FAST)}
    with serving(recorder, media_roots=[synthetic_videos.root], **settings) as url:
        api = client(url)

        def ask(video: Path) -> Any:
            return lambda: api.chat.completions.create(
                model=reason2.model_id,
                messages=video_message(video),  # type: ignore[arg-type]
                max_tokens=3,
            )

        began = time.monotonic()
        responses = in_threads(*(ask(video) for video in videos))
        elapsed = time.monotonic() - began
    assert recorder.sizes == [4]
    assert elapsed < 10, "a full batch must not wait for max_wait_ms"
    for video, response in zip(videos, responses, strict=True):
        [alone] = reason2.generate([conversation(video, **FAST)], SamplingSettings(max_new_tokens=3))
        assert response.choices[0].message.content == f"{video.name}: {alone.text}"


def test_only_requests_with_equal_sampling_settings_share_a_batch(
    reason2: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    recorder = Recorder(reason2)
    video = synthetic_videos.good["h264_24fps"].path
    settings = {"max_batch_size": 8, "max_wait_ms": 1500, "vision": VisionSettings(**FAST)}
    with serving(recorder, media_roots=[synthetic_videos.root], **settings) as url:
        api = client(url)

        def ask(max_tokens: int) -> Any:
            return lambda: api.chat.completions.create(
                model=reason2.model_id,
                messages=video_message(video),  # type: ignore[arg-type]
                max_tokens=max_tokens,
            )

        responses = in_threads(ask(2), ask(3), ask(2), ask(3))
    assert sorted(recorder.sizes) == [2, 2]
    assert sorted(sampling.max_new_tokens for _, sampling in recorder.batches) == [2, 3]
    assert [r.usage.completion_tokens for r in responses] == [2, 3, 2, 3]


def test_a_broken_video_fails_only_its_own_request(reason2: TransformersBackend, synthetic_videos: VideoSet) -> None:
    recorder = Recorder(reason2)
    good = synthetic_videos.good["mpeg4_10fps"].path
    broken = synthetic_videos.broken["truncated"]
    settings = {"max_batch_size": 2, "max_wait_ms": 10_000, "vision": VisionSettings(**FAST)}
    with serving(recorder, media_roots=[synthetic_videos.root], **settings) as url:
        api = client(url)

        def ask(video: Path) -> Any:
            return lambda: api.chat.completions.create(
                model=reason2.model_id,
                messages=video_message(video),  # type: ignore[arg-type]
                max_tokens=3,
            )

        ok, failed = in_threads(ask(good), ask(broken))
    assert recorder.sizes == [2, 1, 1], "the failed batch is retried item by item"
    [expected] = reason2.generate([conversation(good, **FAST)], SamplingSettings(max_new_tokens=3))
    assert ok.choices[0].message.content == expected.text
    assert isinstance(failed, openai.BadRequestError)
    assert "truncated.mp4" in failed.message


def test_the_event_loop_answers_while_a_batch_generates(
    reason2: TransformersBackend, synthetic_videos: VideoSet
) -> None:
    recorder = Recorder(reason2, delay_s=2.0)
    video = synthetic_videos.good["h264_24fps"].path
    with serving(recorder, media_roots=[synthetic_videos.root], vision=VisionSettings(**FAST)) as url:
        api = client(url)
        result: list[Any] = []
        worker = threading.Thread(
            target=lambda: result.append(
                api.chat.completions.create(
                    model=reason2.model_id,
                    messages=video_message(video),  # type: ignore[arg-type]
                    max_tokens=2,
                )
            )
        )
        worker.start()
        assert recorder.started.wait(30)
        began = time.monotonic()
        health = httpx.get(f"{url}/healthz", timeout=10)
        waited = time.monotonic() - began
        worker.join(60)
    assert health.status_code == 200
    assert waited < 1.0, f"/healthz took {waited:.2f} s while the backend was busy"
    assert len(result) == 1
    assert result[0].choices[0].message.content is not None


# ---------------------------------------------------------------------------------------------------------------
# Media roots


@pytest.mark.parametrize(
    "where",
    [
        lambda media: media.parent / "private" / "secret.mp4",
        lambda media: Path(f"{media}/../private/secret.mp4"),
        lambda media: media / "link.mp4",
    ],
    ids=["outside", "dot-dot", "symlink-out"],
)
def test_a_path_outside_the_media_roots_is_refused_with_403(
    reason2: TransformersBackend, media: Path, where: Any
) -> None:
    recorder = Recorder(reason2)
    path: Path = where(media)
    with serving(recorder, media_roots=[media], vision=VisionSettings(**FAST)) as url:
        api = client(url)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            api.chat.completions.create(
                model=reason2.model_id,
                messages=[{"role": "user", "content": [{"type": "video", "video": str(path)}]}],  # type: ignore[list-item,misc]
                max_tokens=2,
            )
        inside = api.chat.completions.create(
            model=reason2.model_id,
            messages=video_message(media / "clip.mp4"),  # type: ignore[arg-type]
            max_tokens=2,
        )
    assert refused.value.status_code == 403
    assert str(path) in refused.value.message
    assert inside.choices[0].message.content is not None
    assert recorder.sizes == [1], "the refused request never reached the model"


def test_without_media_roots_no_file_is_read(reason2: TransformersBackend, synthetic_videos: VideoSet) -> None:
    path = synthetic_videos.good["h264_24fps"].path
    with serving(reason2) as url, pytest.raises(openai.PermissionDeniedError, match="no media roots"):
        client(url).chat.completions.create(
            model=reason2.model_id,
            messages=video_message(path),  # type: ignore[arg-type]
            max_tokens=2,
        )


# ---------------------------------------------------------------------------------------------------------------
# Invalid requests


@pytest.fixture(scope="module")
def validation_server(reason2: TransformersBackend, synthetic_videos: VideoSet) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(reason2)
    with serving(recorder, model_id="tiny", media_roots=[synthetic_videos.root]) as url:
        yield url, recorder


def _good_body(video: Path) -> dict[str, Any]:
    return {"model": "tiny", "messages": video_message(video), "max_tokens": 2}


VIDEO_URL = "messages.0.content.0.video_url.url"
INVALID: dict[str, tuple[dict[str, Any], int, str | None, str]] = {
    # name: (changes to a good body, status, param, part of the message)
    "n": ({"n": 2}, 400, "n", "only n=1"),
    "stream": ({"stream": True}, 400, "stream", "streaming is not supported"),
    "temperature": ({"temperature": -1}, 400, "temperature", "greater than or equal to 0"),
    "max_tokens": ({"max_tokens": 0}, 400, "max_tokens", "greater than 0"),
    "token limits disagree": ({"max_completion_tokens": 5}, 400, None, "max_tokens and max_completion_tokens"),
    "top_p": ({"top_p": 1.5}, 400, "top_p", "less than or equal to 1"),
    "unknown field": ({"temprature": 0.1}, 400, "temprature", "Extra inputs are not permitted"),
    "unsupported field": ({"stop": ["\n"]}, 400, "stop", "not supported"),
    "mm_processor_kwargs": ({"mm_processor_kwargs": {"fsp": 2}}, 400, "mm_processor_kwargs.fsp", "Extra inputs"),
    "fps and nframes": (
        {"mm_processor_kwargs": {"fps": 2, "nframes": 4}},
        400,
        "mm_processor_kwargs",
        "not fps and nframes",
    ),
    "two frame rules": (
        {"mm_processor_kwargs": {"nframes": 4, "max_strided_frames": 8}},
        400,
        "mm_processor_kwargs",
        "not nframes and max_strided_frames",
    ),
    "max_strided_frames": (
        {"mm_processor_kwargs": {"max_strided_frames": 1}},
        400,
        "mm_processor_kwargs.max_strided_frames",
        "greater than or equal to 2",
    ),
    "max_tokens above the limit": ({"max_tokens": 10**9}, 400, "max_tokens", "max_tokens_limit = 4096"),
    "max_completion_tokens above the limit": (
        {"max_tokens": None, "max_completion_tokens": 4097},
        400,
        "max_completion_tokens",
        "max_tokens_limit = 4096",
    ),
    "max_frames above the limit": (
        {"mm_processor_kwargs": {"fps": 1000, "max_frames": 10**9}},
        400,
        "messages.0.content.0",
        "max_frames_limit = 768",
    ),
    "nframes above the limit": (
        {"mm_processor_kwargs": {"nframes": 1000}},
        400,
        "messages.0.content.0",
        "max_frames_limit = 768",
    ),
    "max_strided_frames above the limit": (
        {"mm_processor_kwargs": {"max_strided_frames": 800}},
        400,
        "messages.0.content.0",
        "max_frames_limit = 768",
    ),
    "min_pixels above the limit": (
        {"mm_processor_kwargs": {"min_pixels": 10**9}},
        400,
        "messages.0.content.0",
        "min_pixels_limit = 786432",
    ),
    "no messages": ({"messages": []}, 400, "messages", "at least 1 item"),
    "role": ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages.0.role", "Input should be"),
    # the paths of parts are the body's, without the names pydantic gives the members of the content unions
    "image": (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///a.png"}}]}]},
        400,
        "messages.0.content.0",
        "image inputs are not supported",
    ),
    "part type": (
        {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
        400,
        "messages.0.content.0",
        "'audio'",
    ),
    "content type": ({"messages": [{"role": "user", "content": 5}]}, 400, "messages.0.content", "valid list"),
    "text type": (
        {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": [{"type": "text", "text": 5}]}]},
        400,
        "messages.1.content.0.text",
        "valid string",
    ),
    "text missing": (
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        400,
        "messages.0.content.0.text",
        "Field required",
    ),
    "video_url type": (
        {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": 3}}]}]},
        400,
        VIDEO_URL,
        "valid string",
    ),
    "video_url field": (
        {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "/a.mp4", "x": 1}}]}]},
        400,
        "messages.0.content.0.video_url.x",
        "Extra inputs",
    ),
    "video part field": (  # the part's tag, "video", is also the name of one of its keys
        {"messages": [{"role": "user", "content": [{"type": "video", "video": "/a.mp4", "fps": -1}]}]},
        400,
        "messages.0.content.0.fps",
        "greater than 0",
    ),
    "text part field": (  # an extra key holding the text's own value (one string object, in CPython's cache)
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "A", "label": "A"}]}]},
        400,
        "messages.0.content.0.label",
        "Extra inputs",
    ),
    "video part field of a tag's value": (
        {"messages": [{"role": "user", "content": [{"type": "video", "video": {"fps": 0}, "fps": 0}]}]},
        400,
        "messages.0.content.0.video",
        "valid string",
    ),
    "http url": ({"messages": video_message("https://example.com/a.mp4")}, 400, VIDEO_URL, "local files only"),
    "relative path": ({"messages": video_message("clips/a.mp4")}, 400, VIDEO_URL, "must be absolute"),
    "scheme": ({"messages": video_message("data:video/mp4;base64,AAAA")}, 400, VIDEO_URL, "unsupported URL scheme"),
    "wrong model": ({"model": "gpt-4o"}, 404, "model", "'gpt-4o' is not served here"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_requests_are_refused_naming_the_field(
    case: str, validation_server: tuple[str, Recorder], synthetic_videos: VideoSet
) -> None:
    url, recorder = validation_server
    changes, status, param, message = INVALID[case]
    batches_before = len(recorder.batches)
    response = httpx.post(
        f"{url}/v1/chat/completions", json=_good_body(synthetic_videos.good["h264_24fps"].path) | changes, timeout=30
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert not error["message"].startswith("body"), "a model-level error names no field"
    assert "Value error" not in error["message"], "a check's message is given as it was raised"
    if param is not None:
        assert error["param"] == param
        assert param in error["message"]
    assert len(recorder.batches) == batches_before, "an invalid request never reaches the model"


def test_a_missing_file_under_a_media_root_is_a_400_naming_it(
    validation_server: tuple[str, Recorder], synthetic_videos: VideoSet
) -> None:
    url, _ = validation_server
    missing = synthetic_videos.root / "missing.mp4"
    with pytest.raises(openai.BadRequestError) as refused:
        client(url).chat.completions.create(model="tiny", messages=video_message(missing), max_tokens=2)  # type: ignore[arg-type]
    assert f"{missing}: no such file" in refused.value.message


def test_the_good_body_of_the_invalid_cases_is_accepted(
    validation_server: tuple[str, Recorder], synthetic_videos: VideoSet
) -> None:
    url, _ = validation_server
    response = httpx.post(
        f"{url}/v1/chat/completions", json=_good_body(synthetic_videos.good["h264_24fps"].path), timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "tiny"


@pytest.fixture(scope="module")
def fixed_server() -> Iterator[str]:
    with serving(FixedAnswers("tiny"), model_id="tiny") as url:
        yield url


def _json_error(body: bytes) -> str:
    """What the JSON parser says is wrong with ``body``, and where."""
    try:
        json.loads(body)
    except json.JSONDecodeError as error:
        return f"{error.msg} at character {error.pos}"
    raise AssertionError(f"{body!r} is valid JSON")


_CHAT = "/v1/chat/completions"
_BROKEN_JSON = b'{"model": "tiny", "messages": ['
_WRONG_TYPE = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}'
REFUSED: dict[str, tuple[str, str, bytes, int, str | None, list[str]]] = {
    # name: (method, path, JSON body, status, param, parts of the message)
    "unknown route": ("GET", "/v1/nothing", b"", 404, None, ["Not Found: GET /v1/nothing"]),
    "wrong method": ("GET", _CHAT, b"", 405, None, [f"Method Not Allowed: GET {_CHAT}", "(allowed: POST)"]),
    "malformed JSON": ("POST", _CHAT, _BROKEN_JSON, 400, None, ["not valid JSON", _json_error(_BROKEN_JSON)]),
    "not UTF-8": ("POST", _CHAT, b"\xff\xfe{", 400, None, [f"error parsing the body: POST {_CHAT}", "can't decode"]),
    "no body": ("POST", _CHAT, b"", 400, None, ["the request has no body"]),
    "not an object": ("POST", _CHAT, b"[1, 2]", 400, None, ["the body must be a JSON object"]),
    "wrong type": ("POST", _CHAT, _WRONG_TYPE, 400, "max_tokens", ["max_tokens: Input should be a valid integer"]),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_fastapis_own_refusals_answer_in_openais_error_body(case: str, fixed_server: str) -> None:
    method, path, body, status, param, parts = REFUSED[case]
    headers = {"content-type": "application/json"} if method == "POST" else {}
    response = httpx.request(method, f"{fixed_server}{path}", content=body, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert "\n" not in error["message"]
    for part in parts:
        assert part in error["message"]


def test_a_refused_method_keeps_the_allow_header(fixed_server: str) -> None:
    response = httpx.delete(f"{fixed_server}/v1/models", timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert "(allowed: GET)" in response.json()["error"]["message"]


def test_the_openai_client_reads_the_message_of_an_unknown_route(fixed_server: str) -> None:
    wrong_prefix = openai.OpenAI(base_url=f"{fixed_server}/v2", api_key="unused", max_retries=0, timeout=10)
    with pytest.raises(openai.NotFoundError) as refused:
        wrong_prefix.models.list()
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["message"] == "Not Found: GET /v2/models"
    assert refused.value.type == "invalid_request_error"


# ---------------------------------------------------------------------------------------------------------------
# Models, health, API key


def test_models_and_healthz_name_the_served_model(reason2: TransformersBackend) -> None:
    with serving(reason2, model_id="cosmos-tiny") as url:
        models = client(url).models.list()
        health = httpx.get(f"{url}/healthz", timeout=10)
        spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert {"/v1/chat/completions", "/v1/models", "/healthz"} <= set(spec["paths"])
    assert [model.id for model in models.data] == ["cosmos-tiny"]
    assert models.data[0].object == "model"
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": "cosmos-tiny", "queued": 0}


def test_a_blank_api_key_is_refused_and_never_matches() -> None:
    with pytest.raises(ValueError, match="token is empty"):
        ServeSettings(api_key="")
    assert not bearer_token_matches("Bearer ", "")  # what a blank key would have let in
    assert bearer_token_matches("Bearer s3cret", "s3cret")


def test_the_api_key_is_enforced_when_set(reason2: TransformersBackend) -> None:
    text_only = [{"role": "user", "content": "Say hello."}]
    with serving(reason2, api_key="s3cret") as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, api_key="wrong").models.list()
        with pytest.raises(openai.AuthenticationError) as refused:
            client(url, api_key="wrong").chat.completions.create(
                model=reason2.model_id,
                messages=text_only,  # type: ignore[arg-type]
                max_tokens=2,
            )
        no_header = httpx.get(f"{url}/v1/models", timeout=10)
        health = httpx.get(f"{url}/healthz", timeout=10)
        models = client(url, api_key="s3cret").models.list()
        answer = client(url, api_key="s3cret").chat.completions.create(
            model=reason2.model_id,
            messages=text_only,  # type: ignore[arg-type]
            max_tokens=2,
        )
    assert refused.value.status_code == 401
    assert no_header.status_code == 401
    assert health.status_code == 200
    assert [model.id for model in models.data] == [reason2.model_id]
    assert answer.usage is not None
    assert answer.usage.completion_tokens >= 1


DOCS = ("/docs", "/redoc", "/openapi.json")


def test_the_docs_need_the_api_key_when_one_is_set(reason2: TransformersBackend) -> None:
    key = {"Authorization": "Bearer s3cret"}
    with serving(reason2, api_key="s3cret") as url:
        refused = {path: httpx.get(f"{url}{path}", timeout=10) for path in DOCS}
        given = {path: httpx.get(f"{url}{path}", headers=key, timeout=10) for path in DOCS}
    with serving(reason2) as url:
        keyless = {path: httpx.get(f"{url}{path}", timeout=10) for path in DOCS}
    assert {path: response.status_code for path, response in refused.items()} == dict.fromkeys(DOCS, 401)
    assert {response.json()["error"]["code"] for response in refused.values()} == {"invalid_api_key"}
    assert {path: response.status_code for path, response in given.items()} == dict.fromkeys(DOCS, 200)
    assert {path: response.status_code for path, response in keyless.items()} == dict.fromkeys(DOCS, 200)
    assert {"/v1/chat/completions", "/v1/models"} <= set(given["/openapi.json"].json()["paths"])
    assert "'/openapi.json'" in given["/docs"].text and '"/openapi.json"' in given["/redoc"].text


def test_the_docs_find_the_schema_under_the_prefix_a_proxy_mounts_the_server_at() -> None:
    app = create_app(FixedAnswers("tiny"), ServeSettings(api_key="s3cret"))

    async def pages() -> list[str]:
        transport = httpx.ASGITransport(app=app, root_path="/reason")
        headers = {"Authorization": "Bearer s3cret"}
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy", headers=headers) as proxied:
            return [(await proxied.get(f"/reason{page}")).text for page in ("/docs", "/redoc", "/openapi.json")]

    swagger, redoc, schema = asyncio.run(pages())
    assert "url: '/reason/openapi.json'" in swagger
    assert 'spec-url="/reason/openapi.json"' in redoc
    # "Try it out" and generated clients call the endpoints through the proxy too
    assert json.loads(schema)["servers"] == [{"url": "/reason"}]
    assert "servers" not in app.openapi(), "the cached schema is the same for every prefix"


def test_the_schema_lists_the_refusals_the_server_answers_in_their_shape(tmp_path: Path) -> None:
    key = {"Authorization": "Bearer s3cret"}
    text = [{"role": "user", "content": "Say hello."}]
    outside = [{"role": "user", "content": [{"type": "video", "video": str(tmp_path / "clip.mp4")}]}]
    chat = ("post", "/v1/chat/completions")
    requests: list[tuple[str, str, Any, dict[str, str]]] = [
        (*chat, {"model": "tiny", "messages": "Say hello."}, key),  # 400: messages must be a list
        (*chat, {"model": "tiny", "messages": text}, {}),  # 401: no key
        (*chat, {"model": "tiny", "messages": outside}, key),  # 403: no media roots
        (*chat, {"model": "other", "messages": text}, key),  # 404: another model
        ("get", "/v1/models", None, {}),  # 401: no key
    ]
    with serving(FixedAnswers("tiny"), model_id="tiny", api_key="s3cret", max_queue=4) as url:
        document = httpx.get(f"{url}/openapi.json", headers=key, timeout=10).json()
        answered = [
            (method, path, httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=10))
            for method, path, body, headers in requests
        ]
    with serving(FixedAnswers("tiny"), model_id="tiny") as url:
        open_document = httpx.get(f"{url}/openapi.json", timeout=10).json()

    assert [response.status_code for _, _, response in answered] == [400, 401, 403, 404, 401]
    for method, path, response in answered:
        assert documented_keys(document, path, method, response.status_code) == answered_keys(response.json())
    assert listed_statuses(document) == {
        ("get", "/healthz"): ["200"],
        ("get", "/v1/models"): ["200", "401"],
        ("post", "/v1/chat/completions"): ["200", "400", "401", "403", "404", "429", "500", "503"],
    }
    assert "HTTPValidationError" not in document["components"]["schemas"]
    # without a key nothing answers 401, and without a queue limit nothing answers 429
    assert listed_statuses(open_document)[("get", "/v1/models")] == ["200"]
    assert listed_statuses(open_document)[("post", "/v1/chat/completions")] == [
        "200",
        "400",
        "403",
        "404",
        "500",
        "503",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Settings and imports


def test_serve_settings_are_strict_and_default_to_local_and_fps_4() -> None:
    settings = ServeSettings()
    assert settings.host == "127.0.0.1"
    assert settings.vision.fps == 4
    assert settings.media_roots == []
    assert settings.api_key is None
    assert (settings.max_tokens_limit, settings.max_frames_limit, settings.min_pixels_limit) == (4096, 768, 786432)
    with pytest.raises(ValidationError, match=r"vision: max_frames 768 is above .*max_frames_limit = 100"):
        ServeSettings(max_frames_limit=100)
    with pytest.raises(ValidationError, match=r"sampling: max_new_tokens 8192 is above .*max_tokens_limit = 4096"):
        ServeSettings(sampling=SamplingSettings(max_new_tokens=8192))
    with pytest.raises(ValidationError, match="prot"):
        ServeSettings.model_validate({"prot": 8000})
    with pytest.raises(ValidationError, match="max_batch_size"):
        ServeSettings(max_batch_size=0)
    assert "s3cret" not in repr(ServeSettings(api_key="s3cret"))


def test_importing_the_server_loads_no_model_library() -> None:
    code = (
        "import sys, cookbook_infer.serve; "
        "print(sorted(m for m in ('torch', 'transformers', 'av', 'cv2', 'decord') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
