"""A backend that asks an OpenAI-compatible server: ``vllm serve nvidia/Cosmos-Reason2-8B``,
``cookbook-infer serve``, or any other server speaking the chat-completions API.

It lets a batch job, a scorer or an evaluation use a model served elsewhere (shared GPUs, another machine)
through the same :class:`~cookbook_infer.backends.base.Backend` interface as a model loaded in-process.
Each conversation is one chat completion; up to ``max_concurrency`` are in flight at once so the server
can batch them.

The server loads the videos, so it decides the frames. The vision settings stored in each video part are
sent along as ``mm_processor_kwargs`` (vLLM's per-request processor options), under their qwen-vl-utils
names (``fps``, ``nframes``, ``max_strided_frames``, ``min_frames``, ``max_frames``, ``min_pixels``,
``max_pixels``, ``total_pixels``); which of them a server honours is up to the server (``cookbook-infer serve``
honours all). ``vllm serve`` reads 32 evenly spaced
frames per video unless started with ``--media-io-kwargs '{"video": {"num_frames": -1}}'``; with all frames
read, its Qwen3-VL processor (Reason2) samples them by the ``fps`` sent here within ``min_frames`` and
``max_frames``. Qwen2.5-VL (Reason1) takes the frames the loader gives and the ``fps`` sent here as their
rate, so start the server with the same rate (``{"video": {"num_frames": -1, "fps": 4}}``). For frames
identical to the transformers backend's, use the vLLM backend in-process. Start vLLM without
``--reasoning-parser`` so that the text keeps its ``<think>`` block, as other backends' does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cookbook_data.schemas import Conversation
from cookbook_infer.backends._messages import openai_messages, vision_kwargs
from cookbook_infer.backends.base import CandidateProbabilities, Generation, SamplingSettings

if TYPE_CHECKING:
    from cookbook_infer.vision import ModelVideo


class ServerError(RuntimeError):
    """A chat completion that failed or came back unusable; the message names the server and the item."""


def vision_settings_kwargs(conversation: Conversation) -> dict[str, Any]:
    """The vision settings of the conversation's videos (one set per request, so all videos must agree)."""
    settings = [vision_kwargs(part) for part in conversation.video_parts()]
    if not settings:
        return {}
    if any(other != settings[0] for other in settings[1:]):
        raise ValueError(
            "the video parts of one conversation have different vision settings; "
            "a chat completion carries one set of processor options"
        )
    return settings[0]


def chat_completion_request(model_id: str, conversation: Conversation, sampling: SamplingSettings) -> dict[str, Any]:
    """Keyword arguments of ``client.chat.completions.create`` for one conversation.

    Sampling maps to the standard fields; ``top_k`` (not in OpenAI's API) goes in ``extra_body`` as vLLM and
    SGLang read it, with ``-1`` for "off" (both servers' convention), and so do the vision settings.
    """
    extra_body: dict[str, Any] = {"top_k": sampling.top_k if sampling.top_k is not None else -1}
    if processor_kwargs := vision_settings_kwargs(conversation):
        extra_body["mm_processor_kwargs"] = processor_kwargs
    request: dict[str, Any] = {
        "model": model_id,
        "messages": openai_messages(conversation),
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "presence_penalty": sampling.presence_penalty,
        "extra_body": extra_body,
    }
    if sampling.seed is not None:
        request["seed"] = sampling.seed
    return request


def _describe(index: int, conversation: Conversation) -> str:
    videos = conversation.video_parts()
    return f"item {index}" + (f" ({videos[0].video})" if videos else "")


def _refuse_decoded(videos: Sequence[ModelVideo] | None) -> None:
    if videos is not None:
        raise ValueError("the OpenAI-compatible server reads the videos itself: send conversations without frames")


class OpenAIClientBackend:
    """Generation by an OpenAI-compatible server (see the module docstring for what the server decides).

    Results come back in input order. A failed request raises :class:`ServerError` naming the server and
    the item (so that a batch job can set that item aside), and requests not yet sent are skipped.
    ``api_key`` defaults to ``$OPENAI_API_KEY`` (servers started without a key accept any).
    ``max_retries`` is the client's own retry count for connection errors, 429 and 5xx answers.
    """

    def __init__(
        self,
        model_id: str,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_concurrency: int = 8,
        max_retries: int = 2,
    ) -> None:
        from openai import OpenAI

        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.model_id = model_id
        self.base_url = base_url
        self.max_concurrency = max_concurrency
        self.client = OpenAI(
            base_url=base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def _complete(self, index: int, conversation: Conversation, request: dict[str, Any]) -> Generation:
        try:
            response = self.client.chat.completions.create(**request)
        except Exception as error:
            raise ServerError(
                f"{self.base_url}: chat completion for {_describe(index, conversation)} failed: "
                f"{type(error).__name__}: {error}"
            ) from error
        if not response.choices or response.usage is None:
            raise ServerError(
                f"{self.base_url}: the answer for {_describe(index, conversation)} has no "
                f"{'choices' if not response.choices else 'usage'}"
            )
        choice = response.choices[0]
        return Generation(
            text=choice.message.content or "",
            num_generated_tokens=response.usage.completion_tokens,
            num_prompt_tokens=response.usage.prompt_tokens,
            truncated=choice.finish_reason == "length",
        )

    def generate(
        self,
        conversations: Sequence[Conversation],
        sampling: SamplingSettings,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[Generation]:
        """Send every conversation (at most ``max_concurrency`` at once) and wait for all answers; after a
        failure, requests not yet sent are skipped and the failure of the first failing item is raised.
        The server reads the videos itself, so frames decoded here (``videos``) are refused."""
        _refuse_decoded(videos)
        requests = [
            chat_completion_request(self.model_id, conversation, own)
            for conversation, own in zip(conversations, sampling.per_request(len(conversations)), strict=True)
        ]
        if not requests:
            return []
        failed = threading.Event()

        def complete(index: int, conversation: Conversation, request: dict[str, Any]) -> Generation | None:
            if failed.is_set():
                return None
            try:
                return self._complete(index, conversation, request)
            except BaseException:
                failed.set()
                raise

        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            futures = [
                pool.submit(complete, index, conversation, request)
                for index, (conversation, request) in enumerate(zip(conversations, requests, strict=True))
            ]
        for future in futures:
            if (error := future.exception()) is not None:
                raise error
        generations = [future.result() for future in futures]
        return [generation for generation in generations if generation is not None]

    def next_token_probabilities(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        prefixes: Sequence[str] | None = None,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[CandidateProbabilities]:
        """Not offered: chat-completion servers return log-probabilities only of the top few generated tokens,
        which need not include the candidates, so probability-based scores need an in-process backend."""
        raise NotImplementedError(
            f"{self.base_url}: next-token probabilities (expected scores, Yes/No reward scores) need an "
            "in-process backend: use --backend transformers or --backend vllm"
        )
