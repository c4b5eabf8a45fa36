"""The vLLM backend: offline batched generation with ``vllm.LLM``, fed the frames our own sampler chooses.

vLLM would otherwise load and sample videos itself (OpenCV, its own frame choice and resize). Here every video
part is sampled by :func:`cookbook_data.video.sample_frames` and resized by
:func:`cookbook_infer.vision.resize_frames` (:func:`cookbook_infer.vision.model_videos`), exactly as in the
transformers backend, or made ready by a job's CPU step, and handed to vLLM as
pre-sampled frames with their metadata; the processor is told neither to resample nor to resize. So the same
conversation gives the same prompt tokens and pixels under both backends, and a checkpoint sees the frames
its training data was built with.

Request building (:func:`build_vllm_requests`, :func:`sampling_params_kwargs`) needs no vLLM and is tested on
CPU with the tiny checkpoints' processors; :class:`VLLMBackend` itself is a thin wrapper around
``LLM.generate`` that needs a GPU host with the ``vllm`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from cookbook_data.schemas import Conversation
from cookbook_data.video import SampledVideo
from cookbook_infer.backends._messages import chat_prompt
from cookbook_infer.backends.base import (
    CandidateProbabilities,
    Generation,
    SamplingSettings,
    candidate_probabilities,
    candidate_token_ids,
)
from cookbook_infer.backends.transformers import PATCH_FACTORS, Dtype
from cookbook_infer.vision import ModelVideo, ready_videos

if TYPE_CHECKING:
    import torch

DEFAULT_LIMIT_MM_PER_PROMPT: Mapping[str, int] = {"video": 1, "image": 0}
"""One video per prompt and no images (the cookbook's prompts); vLLM reserves encoder memory per item."""


def _patch_factor(model_type: str) -> Literal[28, 32]:
    if model_type not in PATCH_FACTORS:
        raise ValueError(f"architecture {model_type!r} is not supported (supported: {', '.join(PATCH_FACTORS)})")
    return PATCH_FACTORS[model_type]


def vllm_video(video: ModelVideo) -> tuple[torch.Tensor, dict[str, Any]]:
    """A video made ready for the model in the form vLLM's Qwen-VL processors take: the resized (T, 3, H, W)
    uint8 frames (the tensor the transformers backend gives its processor) and their metadata. ``fps`` is the
    source video's rate and ``frames_indices`` the sampled frames, from which Qwen3-VL computes timestamps;
    ``do_sample_frames = False`` tells vLLM the frames are already chosen."""
    sampled, frames = video
    return frames, {**sampled.video_metadata(), "do_sample_frames": False}


def mm_processor_kwargs(model_type: str, videos: Sequence[SampledVideo]) -> dict[str, Any]:
    """Per-request processor options: no resampling, no resizing, and for Qwen2.5-VL the fps of the sample
    (its temporal position ids; one number, or one per video when they differ). Qwen3-VL reads the time of
    each frame from the metadata instead."""
    _patch_factor(model_type)
    kwargs: dict[str, Any] = {"do_sample_frames": False, "do_resize": False}
    if model_type == "qwen2_5_vl":
        rates = [video.sample_fps for video in videos]
        kwargs["fps"] = rates[0] if len(set(rates)) == 1 else rates
    return kwargs


def build_vllm_requests(
    conversations: Sequence[Conversation],
    processor: Any,
    model_type: str,
    prefixes: Sequence[str] | None = None,
    videos: Sequence[ModelVideo] | None = None,
) -> list[dict[str, Any]]:
    """One ``vllm.LLM.generate`` prompt (a ``TextPrompt`` dict) per conversation.

    ``prompt`` is the processor's chat template with the generation prompt, as in the transformers backend,
    followed by the conversation's prefix (the assistant's answer so far, when scoring its next token); each video
    part is sampled with the vision settings it carries (``multi_modal_data={"video": [(frames, metadata), ...]}``,
    the batch's videos decoded on parallel threads unless ``videos`` were made ready elsewhere) and
    ``mm_processor_kwargs`` keeps vLLM from changing the frames.
    """
    patch_factor = _patch_factor(model_type)
    if any(conversation.image_parts() for conversation in conversations):
        raise ValueError("image parts are not supported by the vLLM backend (videos and text only)")
    ready = iter(ready_videos(conversations, patch_factor, videos))
    requests = []
    for conversation, prefix in zip(conversations, prefixes or [""] * len(conversations), strict=True):
        request: dict[str, Any] = {"prompt": chat_prompt(processor, conversation, prefix)}
        own = [next(ready) for _ in conversation.video_parts()]
        if own:
            request["multi_modal_data"] = {"video": [vllm_video(video) for video in own]}
            request["mm_processor_kwargs"] = mm_processor_kwargs(model_type, [sampled for sampled, _ in own])
        requests.append(request)
    return requests


def build_vllm_request(conversation: Conversation, processor: Any, model_type: str, prefix: str = "") -> dict[str, Any]:
    """The request of one conversation (see :func:`build_vllm_requests`)."""
    [request] = build_vllm_requests([conversation], processor, model_type, [prefix])
    return request


def sampling_params_kwargs(sampling: SamplingSettings) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for our settings. ``top_k = 0`` is vLLM's "off"; at temperature 0
    vLLM decodes greedily and ignores top_p/top_k. Special tokens are dropped from the text and reasoning
    tags kept, as in the transformers backend."""
    return {
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k is not None else 0,
        "presence_penalty": sampling.presence_penalty,
        "seed": sampling.seed,
        "skip_special_tokens": True,
    }


def candidate_requests(request: dict[str, Any], candidates: Sequence[str]) -> list[dict[str, Any]]:
    """One request per candidate: the prompt followed by the candidate, whose own prompt log-probability
    (``prompt_logprobs``) is the next-token log-probability we want. vLLM returns only the top few
    *generated* log-probabilities, which need not include every candidate; prompt tokens always get theirs.
    The requests share their prefix, which vLLM's prefix cache computes once."""
    return [{**request, "prompt": request["prompt"] + candidate} for candidate in candidates]


PROMPT_LOGPROB_PARAMS: Mapping[str, Any] = {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
"""``vllm.SamplingParams`` for reading the log-probability of each prompt token (and generating one token,
the least vLLM generates)."""


def last_prompt_logprob(output: Any, token_id: int) -> float:
    """The log-probability of a request's last prompt token (the candidate) from a ``vllm.RequestOutput``."""
    return float(output.prompt_logprobs[-1][token_id].logprob)


def generation_from_output(output: Any) -> Generation:
    """Our :class:`Generation` from a ``vllm.RequestOutput`` (its first and only completion). The token
    count includes the end-of-sequence token, as the transformers backend counts; vLLM's ``finish_reason``
    is ``"length"`` when the token limit cut the completion off."""
    completion = output.outputs[0]
    return Generation(
        text=completion.text,
        num_generated_tokens=len(completion.token_ids),
        num_prompt_tokens=None if output.prompt_token_ids is None else len(output.prompt_token_ids),
        truncated=completion.finish_reason == "length",
    )


class VLLMBackend:
    """Cosmos Reason 1 / 2 on vLLM (GPU), behind the same :class:`~cookbook_infer.backends.base.Backend`
    interface as the transformers backend, with the same frames (see the module docstring).

    The constructor loads the checkpoint's processor (for the chat template) and config (for the
    architecture) with transformers, then starts ``vllm.LLM``; ``generate`` builds one request per
    conversation and makes one ``LLM.generate`` call for the batch, which vLLM schedules with continuous
    batching. Only the request building is tested without a GPU; this class is deliberately a thin wrapper.
    """

    def __init__(
        self,
        model_id: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        limit_mm_per_prompt: Mapping[str, int] | None = None,
        dtype: Dtype = "auto",
        seed: int = 0,
    ) -> None:
        try:
            import vllm
        except ImportError as error:
            raise ImportError(
                f"the vLLM backend needs vLLM, which is not installed ({error}): "
                "pip install 'cookbook-infer[vllm]' (on a Linux host with a CUDA GPU)"
            ) from error
        from transformers import AutoConfig, AutoProcessor

        self.model_id = model_id
        self.model_type: str = AutoConfig.from_pretrained(model_id).model_type
        try:
            _patch_factor(self.model_type)
        except ValueError as error:
            raise ValueError(f"{model_id}: {error}") from None
        self.processor: Any = AutoProcessor.from_pretrained(model_id)
        limits = dict(limit_mm_per_prompt if limit_mm_per_prompt is not None else DEFAULT_LIMIT_MM_PER_PROMPT)
        self.llm: Any = vllm.LLM(
            model=model_id,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            limit_mm_per_prompt=limits,
            dtype=dtype,
            seed=seed,
        )

    def generate(
        self,
        conversations: Sequence[Conversation],
        sampling: SamplingSettings,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[Generation]:
        """One ``LLM.generate`` call for the batch; outputs come back in input order."""
        from vllm import SamplingParams

        if not conversations:
            return []
        requests = build_vllm_requests(conversations, self.processor, self.model_type, videos=videos)
        params = [SamplingParams(**sampling_params_kwargs(own)) for own in sampling.per_request(len(requests))]
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        return [generation_from_output(output) for output in outputs]

    def next_token_probabilities(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        prefixes: Sequence[str] | None = None,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[CandidateProbabilities]:
        """The candidates' log-probabilities as prompt tokens (see :func:`candidate_requests`), one
        ``LLM.generate`` call for the whole batch."""
        from vllm import SamplingParams

        if not conversations:
            return []
        ids = candidate_token_ids(self.processor.tokenizer, candidates)
        requests = [
            candidate
            for request in build_vllm_requests(conversations, self.processor, self.model_type, prefixes, videos)
            for candidate in candidate_requests(request, candidates)
        ]
        outputs = self.llm.generate(requests, sampling_params=SamplingParams(**PROMPT_LOGPROB_PARAMS), use_tqdm=False)
        per_conversation = [outputs[start : start + len(ids)] for start in range(0, len(outputs), len(ids))]
        return [
            candidate_probabilities(candidates, [last_prompt_logprob(o, i) for o, i in zip(group, ids, strict=True)])
            for group in per_conversation
        ]
