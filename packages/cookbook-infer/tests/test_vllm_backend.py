"""The vLLM backend hands vLLM the frames our sampler chooses, with what its Qwen-VL processors need to use
them unchanged; sampling settings map to ``vllm.SamplingParams``.

vLLM runs on GPU hosts only. Here, requests are built with the tiny checkpoints' real processors and then
processed the way vLLM 0.17's Qwen2.5-VL / Qwen3-VL multimodal processors call the Hugging Face processor
(built with the request's ``mm_processor_kwargs``, called with the frames and, for Qwen3-VL, their
metadata): the tokens and pixels must equal the transformers backend's. The ``LLM`` wrapper's wiring is
checked against a stand-in ``vllm`` module; the real engine only in the ``gpu`` test.
"""

import importlib.util
import inspect
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from cookbook_data.prompts import load_prompt
from cookbook_data.schemas import Conversation, ImagePart, TextPart, UserMessage
from cookbook_data.testing import VideoSet
from cookbook_data.video import VisionSettings, sample_frames
from cookbook_infer.backends.base import Backend, Generation, SamplingSettings
from cookbook_infer.backends.transformers import TransformersBackend
from cookbook_infer.backends.vllm import (
    VLLMBackend,
    build_vllm_request,
    mm_processor_kwargs,
    sampling_params_kwargs,
)
from cookbook_infer.testing import Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_infer.vision import resize_frames

PROMPTS = {"reason1": "reason1_videophy2_critic_thinking", "reason2": "reason2_videophy2_critic"}
MODEL_TYPES = {"reason1": "qwen2_5_vl", "reason2": "qwen3_vl"}
PATCH = {"reason1": 28, "reason2": 32}
VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


@dataclass
class Tiny:
    arch: Arch
    folder: Path
    processor: Any
    transformers: TransformersBackend

    @property
    def model_type(self) -> str:
        return MODEL_TYPES[self.arch]

    def critic(self, video: Path, settings: VisionSettings) -> Conversation:
        return load_prompt(PROMPTS[self.arch]).conversation([settings.video_part(str(video))])


@pytest.fixture(scope="module", params=["reason1", "reason2"])
def tiny(request: pytest.FixtureRequest, tiny_checkpoints: TinyCheckpoints) -> Tiny:
    from transformers import AutoProcessor

    arch: Arch = request.param
    folder = tiny_checkpoints(arch)
    processor = AutoProcessor.from_pretrained(str(folder))  # type: ignore[no-untyped-call]
    return Tiny(arch, folder, processor, TransformersBackend(str(folder)))


def process_as_vllm_does(folder: Path, model_type: str, request: dict[str, Any]) -> Any:
    """What vLLM 0.17 does with a request on its way to the model: the Hugging Face processor is built with
    the request's ``mm_processor_kwargs`` and called with them, the frames and (Qwen3-VL) the metadata,
    minus ``do_sample_frames``, as ``transformers`` ``VideoMetadata``."""
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata

    kwargs = request.get("mm_processor_kwargs", {})
    processor = AutoProcessor.from_pretrained(str(folder), use_fast=True, **kwargs)  # type: ignore[no-untyped-call]
    videos = request.get("multi_modal_data", {}).get("video", [])
    extra: dict[str, Any] = {}
    if videos:
        extra["videos"] = [frames for frames, _ in videos]
        if model_type == "qwen3_vl":
            extra["video_metadata"] = [
                VideoMetadata(**{k: v for k, v in metadata.items() if k != "do_sample_frames"})
                for _, metadata in videos
            ]
    return processor(text=[request["prompt"]], return_tensors="pt", **kwargs, **extra)


def test_vllm_sees_the_tokens_and_pixels_the_transformers_backend_feeds(tiny: Tiny, synthetic_videos: VideoSet) -> None:
    video = synthetic_videos.good["h264_30fps_long"].path
    conversation = tiny.critic(video, VisionSettings(fps=4, max_pixels=64 * PATCH[tiny.arch] ** 2))
    request = build_vllm_request(conversation, tiny.processor, tiny.model_type)

    ours = process_as_vllm_does(tiny.folder, tiny.model_type, request)
    reference = tiny.transformers._inputs([conversation])
    assert torch.equal(ours["input_ids"], reference["input_ids"])
    assert torch.equal(ours["pixel_values_videos"], reference["pixel_values_videos"])
    assert torch.equal(ours["video_grid_thw"], reference["video_grid_thw"])
    assert ours["video_grid_thw"][0, 0] == 10  # 20 frames (5 s at 4 fps), two per temporal patch
    if tiny.arch == "reason1":
        assert torch.equal(ours["second_per_grid_ts"], reference["second_per_grid_ts"])


def test_the_request_holds_the_sampled_frames_their_metadata_and_the_chat_prompt(
    tiny: Tiny, synthetic_videos: VideoSet
) -> None:
    video = synthetic_videos.good["h264_24fps"].path
    settings = VisionSettings(fps=4)
    conversation = tiny.critic(video, settings)
    request = build_vllm_request(conversation, tiny.processor, tiny.model_type)

    assert set(request) == {"prompt", "multi_modal_data", "mm_processor_kwargs"}
    assert request["prompt"] == tiny.processor.apply_chat_template(
        conversation.to_messages(), tokenize=False, add_generation_prompt=True
    )
    assert request["prompt"].count("<|vision_start|><|video_pad|><|vision_end|>") == 1
    [(frames, metadata)] = request["multi_modal_data"]["video"]
    sampled = sample_frames(video, settings.model_copy(update={"patch_factor": PATCH[tiny.arch]}))
    assert frames.dtype == torch.uint8
    assert torch.equal(frames, resize_frames(sampled))
    assert frames.shape == (8, 3, sampled.resized_height, sampled.resized_width)  # 2 s at 4 fps
    assert metadata == {
        "fps": 24.0,
        "frames_indices": sampled.frame_indices,
        "total_num_frames": 48,
        "do_sample_frames": False,
    }


def test_processor_options_forbid_resampling_and_resizing(synthetic_videos: VideoSet) -> None:
    path = synthetic_videos.good["h264_24fps"].path
    four = sample_frames(path, VisionSettings(fps=4))
    eight = sample_frames(path, VisionSettings(fps=8))
    assert mm_processor_kwargs("qwen3_vl", [four]) == {"do_sample_frames": False, "do_resize": False}
    assert mm_processor_kwargs("qwen2_5_vl", [four]) == {
        "do_sample_frames": False,
        "do_resize": False,
        "fps": four.sample_fps,
    }
    assert mm_processor_kwargs("qwen2_5_vl", [four, eight])["fps"] == [four.sample_fps, eight.sample_fps]
    with pytest.raises(ValueError, match="'llava' is not supported"):
        mm_processor_kwargs("llava", [four])


def test_text_only_conversations_carry_no_media(tiny: Tiny) -> None:
    conversation = Conversation.from_messages_json('[{"role": "user", "content": "Say hello."}]')
    request = build_vllm_request(conversation, tiny.processor, tiny.model_type)
    assert set(request) == {"prompt"}
    assert request["prompt"].endswith("Say hello.<|im_end|>\n<|im_start|>assistant\n")


def test_image_parts_are_refused(tiny: Tiny) -> None:
    conversation = Conversation(
        messages=[UserMessage(content=[ImagePart(image="/data/a.png"), TextPart(text="What is this?")])]
    )
    with pytest.raises(ValueError, match="image parts are not supported"):
        build_vllm_request(conversation, tiny.processor, tiny.model_type)


def test_a_broken_video_fails_naming_the_file(tiny: Tiny, synthetic_videos: VideoSet) -> None:
    conversation = tiny.critic(synthetic_videos.broken["truncated"], VisionSettings())
    with pytest.raises(RuntimeError, match=r"truncated\.mp4: cannot open as video"):
        build_vllm_request(conversation, tiny.processor, tiny.model_type)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            SamplingSettings(max_new_tokens=6),
            {"max_tokens": 6, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "presence_penalty": 0.0, "seed": 0},
        ),
        (
            SamplingSettings(max_new_tokens=4096, temperature=0.7, top_p=0.8, top_k=20, presence_penalty=1.5),
            {"max_tokens": 4096, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "presence_penalty": 1.5, "seed": 0},
        ),
        (
            SamplingSettings(temperature=0.6, top_p=0.95, seed=None),
            {"max_tokens": 512, "temperature": 0.6, "top_p": 0.95, "top_k": 0, "presence_penalty": 0.0, "seed": None},
        ),
    ],
    ids=["greedy", "reason2-preset", "unseeded"],
)
def test_sampling_settings_map_to_vllm_sampling_params(settings: SamplingSettings, expected: dict[str, Any]) -> None:
    assert sampling_params_kwargs(settings) == {**expected, "skip_special_tokens": True}


class RecordingLLM:
    """Stands in for ``vllm.LLM``: records how it is built and called, answers like ``LLM.generate``."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[list[dict[str, Any]], Any, bool]] = []

    def generate(self, prompts: list[dict[str, Any]], sampling_params: Any, use_tqdm: bool) -> list[Any]:
        self.calls.append((prompts, sampling_params, use_tqdm))
        return [
            types.SimpleNamespace(
                prompt_token_ids=[3] * (10 + i),
                outputs=[
                    types.SimpleNamespace(
                        text=f"<answer>{i}</answer>",
                        token_ids=[7] * (i + 2),
                        finish_reason="length" if i == 2 else "stop",
                    )
                ],
            )
            for i in range(len(prompts))
        ]


@pytest.fixture
def stand_in_vllm(monkeypatch: pytest.MonkeyPatch) -> list[RecordingLLM]:
    """A ``vllm`` module whose ``LLM`` records its arguments and whose ``SamplingParams`` returns its kwargs."""
    built: list[RecordingLLM] = []

    def make_llm(**kwargs: Any) -> RecordingLLM:
        built.append(RecordingLLM(**kwargs))
        return built[-1]

    module = types.ModuleType("vllm")
    module.LLM = make_llm  # type: ignore[attr-defined]
    module.SamplingParams = dict  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return built


def test_the_backend_builds_the_engine_and_maps_outputs_in_order(
    stand_in_vllm: list[RecordingLLM], tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet
) -> None:
    folder = str(tiny_checkpoints("reason2"))
    backend = VLLMBackend(folder, max_model_len=8192)
    [llm] = stand_in_vllm
    assert llm.kwargs == {
        "model": folder,
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "max_model_len": 8192,
        "limit_mm_per_prompt": {"video": 1, "image": 0},
        "dtype": "auto",
        "seed": 0,
    }
    assert backend.model_type == "qwen3_vl"

    settings = VisionSettings(nframes=4)
    videos = [synthetic_videos.good[name].path for name in ("h264_24fps", "mpeg4_8fps", "mpeg4_10fps")]
    conversations = [load_prompt(PROMPTS["reason2"]).conversation([settings.video_part(str(v))]) for v in videos]
    sampling = SamplingSettings(max_new_tokens=9, temperature=0.6, top_k=20)
    generations = backend.generate(conversations, sampling)

    # vLLM's finish_reason "length" (the third answer) is a cut-off answer
    assert generations == [
        Generation(f"<answer>{i}</answer>", i + 2, num_prompt_tokens=10 + i, truncated=i == 2) for i in range(3)
    ]
    [(prompts, params, use_tqdm)] = llm.calls
    # each request seeded on its own: copies of one prompt (a scorer's samples) must not all draw alike
    assert params == [sampling_params_kwargs(sampling.model_copy(update={"seed": seed})) for seed in (0, 1, 2)]
    assert use_tqdm is False
    assert [p["multi_modal_data"]["video"][0][1]["total_num_frames"] for p in prompts] == [48, 24, 30]
    assert backend.generate([], sampling) == []
    assert len(llm.calls) == 1


def test_an_unsupported_architecture_is_refused_before_the_engine_starts(
    stand_in_vllm: list[RecordingLLM], tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match=r"architecture 'gpt2' is not supported"):
        VLLMBackend(str(tmp_path))
    assert stand_in_vllm == []


@pytest.mark.skipif(VLLM_INSTALLED, reason="vLLM is installed")
def test_without_vllm_the_error_names_the_extra_to_install() -> None:
    with pytest.raises(ImportError, match=r"pip install 'cookbook-infer\[vllm\]'"):
        VLLMBackend("nvidia/Cosmos-Reason2-2B")


def test_the_backend_satisfies_the_backend_protocol() -> None:
    backend: Backend = VLLMBackend.__new__(VLLMBackend)  # checked by mypy: a mismatch is a type error
    for method in ("generate", "next_token_probabilities"):
        assert inspect.signature(getattr(type(backend), method)) == inspect.signature(getattr(Backend, method))


@pytest.mark.gpu
@pytest.mark.skipif(not VLLM_INSTALLED or not torch.cuda.is_available(), reason="needs vLLM and a CUDA GPU")
@pytest.mark.parametrize("arch", ["reason1", "reason2"])
def test_generates_on_a_gpu(arch: Arch, tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet) -> None:
    backend = VLLMBackend(str(tiny_checkpoints(arch)), gpu_memory_utilization=0.3, max_model_len=4096)
    settings = VisionSettings(fps=4, max_pixels=64 * PATCH[arch] ** 2)
    conversations = [
        load_prompt(PROMPTS[arch]).conversation([settings.video_part(str(v.path))])
        for v in synthetic_videos.good.values()
    ]
    greedy = SamplingSettings(max_new_tokens=6)
    first = backend.generate(conversations, greedy)
    assert backend.generate(conversations, greedy) == first
    assert len(first) == len(conversations)
    assert all(1 <= g.num_generated_tokens <= 6 for g in first)


class ScoringLLM:
    """Stands in for ``vllm.LLM`` when reading prompt log-probabilities: processes each request as vLLM's
    processor would and runs the tiny model on it, answering with ``prompt_logprobs`` of the last token."""

    def __init__(self, tiny: Tiny) -> None:
        self.tiny = tiny
        self.params: list[Any] = []

    def generate(self, prompts: list[dict[str, Any]], sampling_params: Any, use_tqdm: bool) -> list[Any]:
        self.params.append(sampling_params)
        outputs = []
        for request in prompts:
            inputs = process_as_vllm_does(self.tiny.folder, self.tiny.model_type, request)
            with torch.inference_mode():
                logits = self.tiny.transformers.loaded.model(**inputs).logits[0, -2].float()
            last = int(inputs["input_ids"][0, -1])
            logprob = float(torch.log_softmax(logits, dim=-1)[last])
            read = {last: types.SimpleNamespace(logprob=logprob)}
            outputs.append(types.SimpleNamespace(prompt_logprobs=[None, read]))
        return outputs


def test_next_token_probabilities_read_the_candidates_as_prompt_tokens(
    stand_in_vllm: list[RecordingLLM], tiny: Tiny, synthetic_videos: VideoSet
) -> None:
    settings = VisionSettings(nframes=4, max_pixels=64 * PATCH[tiny.arch] ** 2)
    videos = [synthetic_videos.good[name].path for name in ("h264_24fps", "mpeg4_8fps")]
    conversations = [tiny.critic(video, settings) for video in videos]
    backend = VLLMBackend.__new__(VLLMBackend)
    backend.processor, backend.llm = tiny.processor, ScoringLLM(tiny)
    backend.model_type = tiny.model_type
    candidates, prefixes = ["1", "2", "3", "4", "5"], ["<answer>\n", ""]

    got = backend.next_token_probabilities(conversations, candidates, prefixes)

    expected = tiny.transformers.next_token_probabilities(conversations, candidates, prefixes)
    for ours, reference in zip(got, expected, strict=True):
        assert ours.mass == pytest.approx(reference.mass, rel=1e-3)
        assert ours.probabilities == pytest.approx(reference.probabilities, rel=1e-3)
    assert backend.llm.params == [{"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}]
