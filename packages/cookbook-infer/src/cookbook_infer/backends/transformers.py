"""The Hugging Face transformers backend: Cosmos Reason 1 (Qwen2.5-VL) and 2 (Qwen3-VL) on CPU or GPU."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cookbook_data.schemas import Conversation
from cookbook_infer.backends._messages import chat_prompt
from cookbook_infer.backends._video_patches import patching_processor
from cookbook_infer.backends.base import (
    CandidateProbabilities,
    Generation,
    SamplingSettings,
    candidate_probabilities,
    candidate_token_ids,
)
from cookbook_infer.vision import ModelVideo, ready_videos

__all__ = [
    "PATCH_FACTORS",
    "Dtype",
    "LoadedModel",
    "TransformersBackend",
    "chat_prompt",
    "load_pretrained",
    "model_inputs",
    "resolve_device",
]

Dtype = Literal["auto", "float32", "bfloat16", "float16"]

PATCH_FACTORS: dict[str, Literal[28, 32]] = {"qwen2_5_vl": 28, "qwen3_vl": 32}
"""Resized frame sides are multiples of this, per architecture (``config.model_type``)."""


@dataclass
class LoadedModel:
    """A model, its processor, and the id it was loaded from."""

    model_id: str
    model: Any
    processor: Any


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other names as given, but a CUDA device asked
    for where torch sees none is refused with a message saying so."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA device")
    return name


def load_pretrained(
    model_id: str,
    *,
    device: str = "cpu",
    dtype: Dtype = "auto",
    revision: str | None = None,
    processor_from: str | None = None,
) -> LoadedModel:
    """Load a checkpoint by hub id or local path with the Auto classes, in eval mode on ``device``.

    The processor pads on the left so batched generation continues every prompt from its last token, the
    vision tower attends its windows in batched calls (:mod:`cookbook_infer.backends._vision_attention`), and
    the per-video index work is done on the CPU once per frame grid (:mod:`cookbook_infer.backends._grid_indices`).
    ``processor_from`` names where the processor comes from when the checkpoint has none (a training export
    of the weights alone takes its base model's).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from cookbook_infer.backends._grid_indices import index_grids_once
    from cookbook_infer.backends._vision_attention import batch_vision_attention

    if processor_from is None:
        processor = AutoProcessor.from_pretrained(model_id, revision=revision)
    else:
        processor = AutoProcessor.from_pretrained(processor_from)
    processor.tokenizer.padding_side = "left"
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model: Any = AutoModelForImageTextToText.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
    model.to(resolve_device(device))
    model.eval()
    batch_vision_attention(model)
    index_grids_once(model)
    return LoadedModel(model_id=model_id, model=model, processor=processor)


def _presence_penalty(penalty: float, prompt_length: int) -> Any:
    """A logits processor subtracting ``penalty`` from every token already generated (not from the prompt),
    as OpenAI and vLLM define presence_penalty; transformers has no built-in one."""
    import torch
    from transformers import LogitsProcessor

    class PresencePenalty(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            generated = input_ids[:, prompt_length:]
            if generated.shape[1] == 0:
                return scores
            present = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, generated, True)
            return scores - penalty * present.to(scores.dtype)  # type: ignore[return-value]

    return PresencePenalty()


def model_inputs(
    processor: Any,
    model_type: str,
    conversations: Sequence[Conversation],
    prefixes: Sequence[str] | None = None,
    videos: Sequence[ModelVideo] | None = None,
    *,
    device: str | None = None,
) -> Any:
    """The processor's tensors for a batch of conversations: each one's chat-template prompt, ending in the
    assistant turn's opening followed by its prefix, and the frames its video parts' vision settings choose.

    The processor is told not to resample or resize, so what the model sees is exactly what the settings say. This is
    the one way a conversation becomes model input, for generation, scoring and training alike. ``videos`` are the
    video parts already made ready elsewhere (:func:`cookbook_infer.vision.model_videos`, by a job's CPU step), in
    order; without them the parts are decoded here.

    The frames are cut into patches as uint8 and normalised a video at a time into the batch's tensor
    (:mod:`cookbook_infer.backends._video_patches`), on ``device`` (the CPU when None): on a GPU that work,
    which would otherwise hold up the model's thread, costs next to nothing. The text tensors stay on the CPU.
    """

    if model_type not in PATCH_FACTORS:
        raise ValueError(f"architecture {model_type!r} is not supported (supported: {', '.join(PATCH_FACTORS)})")
    patch_factor = PATCH_FACTORS[model_type]
    texts = [
        chat_prompt(processor, conversation, prefix)
        for conversation, prefix in zip(conversations, prefixes or [""] * len(conversations), strict=True)
    ]
    ready = ready_videos(conversations, patch_factor, videos)
    sampled = [video for video, _ in ready]
    video_kwargs: dict[str, Any] = {}
    if sampled:
        video_kwargs["videos"] = [frames for _, frames in ready]
        video_kwargs["do_resize"] = False
        if device is not None:
            video_kwargs["device"] = device
        if model_type == "qwen3_vl":
            video_kwargs["video_metadata"] = [video.video_metadata() for video in sampled]
            video_kwargs["do_sample_frames"] = False
        else:
            video_kwargs["fps"] = [video.sample_fps for video in sampled]
        processor = patching_processor(processor)
    return processor(text=texts, return_tensors="pt", padding=True, **video_kwargs)


class TransformersBackend:
    """Batched generation with ``model.generate``; frames sampled by :mod:`cookbook_data.video`.

    The vision settings stored in each video part decide the frames and their size; the processor is told
    not to resample or resize, so what the model sees is exactly what the settings say.
    """

    def __init__(self, model_id: str, *, device: str = "cpu", dtype: Dtype = "auto") -> None:
        self._adopt(load_pretrained(model_id, device=device, dtype=dtype))

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> TransformersBackend:
        """A backend around a model already in memory (one being trained, or built from a config for a
        benchmark) instead of one loaded from ``model_id``."""
        backend = cls.__new__(cls)
        backend._adopt(loaded)
        return backend

    def _adopt(self, loaded: LoadedModel) -> None:
        self.model_id = loaded.model_id
        self.loaded = loaded
        # Held by a sampling generation from seeding torch's global generator to its end, so that calls from
        # several threads (a job's workers) each draw from their own seed, not from one another's; greedy
        # generations draw nothing and run side by side.
        self._drawing = threading.Lock()
        self.model_type: str = loaded.model.config.model_type
        if self.model_type not in PATCH_FACTORS:
            raise ValueError(
                f"{loaded.model_id}: architecture {self.model_type!r} is not supported "
                f"(supported: {', '.join(PATCH_FACTORS)})"
            )
        self.patch_factor = PATCH_FACTORS[self.model_type]

    def _inputs(
        self,
        conversations: Sequence[Conversation],
        prefixes: Sequence[str] | None = None,
        videos: Sequence[ModelVideo] | None = None,
    ) -> Any:
        device = self.loaded.model.device
        on_gpu = None if device.type == "cpu" else str(device)
        inputs = model_inputs(self.loaded.processor, self.model_type, conversations, prefixes, videos, device=on_gpu)
        return inputs.to(device)

    def generate(
        self,
        conversations: Sequence[Conversation],
        sampling: SamplingSettings,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[Generation]:
        """Generate for a batch of conversations (prompts left-padded to one length)."""
        import torch

        inputs = self._inputs(conversations, videos=videos)
        options: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        if sampling.presence_penalty:
            options["logits_processor"] = [_presence_penalty(sampling.presence_penalty, inputs["input_ids"].shape[1])]
        with self._drawing if options["do_sample"] else contextlib.nullcontext(), torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = self.loaded.model.generate(**inputs, **options)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        texts = self.loaded.processor.batch_decode(new_tokens, skip_special_tokens=True)
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()  # left padding is masked out
        return [
            self._generation(text, row, length)
            for text, row, length in zip(texts, new_tokens.tolist(), prompt_lengths, strict=True)
        ]

    def next_token_probabilities(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        prefixes: Sequence[str] | None = None,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[CandidateProbabilities]:
        """One forward pass over the batch; only the last position's logits are computed (left padding puts
        every row's last token there)."""
        import torch

        ids = candidate_token_ids(self.loaded.processor.tokenizer, candidates)
        inputs = self._inputs(conversations, prefixes, videos)
        with torch.inference_mode():
            logits = self.loaded.model(**inputs, logits_to_keep=1).logits[:, -1, :].float()
        logprobs = torch.log_softmax(logits, dim=-1)[:, ids]
        return [candidate_probabilities(candidates, row) for row in logprobs.tolist()]

    def _generation(self, text: str, tokens: list[int], prompt_tokens: int) -> Generation:
        """The generation of one row: its tokens up to and including the first end-of-sequence token (the rest
        is padding), truncated when there is none (the row ran to the token limit)."""
        eos = self.loaded.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos])
        for position, token in enumerate(tokens):
            if token in stops:
                return Generation(text=text, num_generated_tokens=position + 1, num_prompt_tokens=prompt_tokens)
        return Generation(text=text, num_generated_tokens=len(tokens), num_prompt_tokens=prompt_tokens, truncated=True)
