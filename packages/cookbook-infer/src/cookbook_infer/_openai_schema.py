"""Request and response bodies of the OpenAI chat-completions API, as far as :mod:`cookbook_infer.serve` speaks it.

Requests are validated strictly: an unknown field, or a known OpenAI field this server cannot honour, is an
error that names the field rather than something silently ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from cookbook_data.schemas import Strict, TextPart, VideoPart, check_one_frame_rule

PositiveInt = Annotated[int, Field(gt=0)]


class VideoUrl(Strict):
    """Where the video is: a ``file://`` URL (or an absolute path) under one of the server's media roots."""

    url: str = Field(min_length=1, description="file:// URL or absolute path of the video.")


class VideoUrlPart(Strict):
    """A video given by URL, as vLLM accepts it: ``{"type": "video_url", "video_url": {"url": ...}}``."""

    type: Literal["video_url"] = "video_url"
    video_url: VideoUrl = Field(description="The video's location.")


class ImageUrlPart(BaseModel):
    """An OpenAI image part: recognised so that the error says why it is refused."""

    model_config = ConfigDict(extra="allow")

    type: Literal["image_url"] = "image_url"

    @model_validator(mode="after")
    def _refuse(self) -> Self:
        raise ValueError("image inputs are not supported by this server (send text and video parts)")


RequestPart = Annotated[TextPart | VideoPart | VideoUrlPart | ImageUrlPart, Field(discriminator="type")]
"""A content part: OpenAI ``text``, vLLM ``video_url``, or the Qwen-VL ``video`` part with its own settings."""


def _content_form(value: Any) -> str:
    return "text" if isinstance(value, str) else "parts"


RequestContent = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[RequestPart], Tag("parts")],
    Discriminator(_content_form),
]


class RequestMessage(Strict):
    """One chat turn. ``developer`` is read as ``system``."""

    role: Literal["system", "developer", "user", "assistant"] = Field(description="Who speaks.")
    content: RequestContent = Field(description="Text, or a list of text and video parts.")
    name: str | None = Field(default=None, description="Speaker name (accepted and ignored).")


class MediaProcessorKwargs(Strict):
    """vLLM's ``mm_processor_kwargs``: vision settings for every video of the request that does not set its own.

    ``max_strided_frames`` is not vLLM's; :class:`~cookbook_infer.backends.openai_client.OpenAIClientBackend`
    sends it for models sampled that way, and this server honours it."""

    fps: Annotated[float, Field(gt=0)] | None = Field(default=None, description="Frames per second to sample.")
    nframes: PositiveInt | None = Field(default=None, description="Exact number of frames to sample.")
    max_strided_frames: Annotated[int, Field(ge=2)] | None = Field(
        default=None, description="Every k-th frame, at most this many (the Cosmos-Reason1-7B-Reward recipe)."
    )
    min_frames: PositiveInt | None = Field(default=None, description="Fewest frames when sampling by fps.")
    max_frames: PositiveInt | None = Field(default=None, description="Most frames when sampling by fps.")
    min_pixels: PositiveInt | None = Field(default=None, description="Smallest area of one resized frame.")
    max_pixels: PositiveInt | None = Field(default=None, description="Largest area of one resized frame.")
    total_pixels: PositiveInt | None = Field(default=None, description="Pixel budget over all frames of a video.")

    @model_validator(mode="after")
    def _one_frame_rule(self) -> Self:
        check_one_frame_rule(self)
        return self


_UNSUPPORTED = (
    "stop",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "stream_options",
)


class ChatCompletionRequest(Strict):
    """``POST /v1/chat/completions``. Fields left out take the server's defaults (greedy decoding unless set)."""

    model: str = Field(min_length=1, description="Name of the served model (see `GET /v1/models`).")
    messages: list[RequestMessage] = Field(min_length=1, description="The conversation so far.")
    max_tokens: PositiveInt | None = Field(default=None, description="Most tokens to generate (legacy name).")
    max_completion_tokens: PositiveInt | None = Field(default=None, description="Most tokens to generate.")
    temperature: Annotated[float, Field(ge=0)] | None = Field(default=None, description="0 for greedy decoding.")
    top_p: Annotated[float, Field(gt=0, le=1)] | None = Field(default=None, description="Nucleus sampling mass.")
    top_k: Annotated[int, Field(ge=-1)] | None = Field(
        default=None, description="vLLM extension: sample among the k most likely tokens; -1 or 0 for all."
    )
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = Field(
        default=None, description="Penalty on tokens already generated."
    )
    seed: int | None = Field(default=None, description="Sampling seed.")
    n: int | None = Field(default=None, description="Number of choices; only 1 is supported.")
    stream: bool | None = Field(default=None, description="Streaming is not supported; false or absent.")
    user: str | None = Field(default=None, description="End-user id (accepted and ignored).")
    mm_processor_kwargs: MediaProcessorKwargs | None = Field(
        default=None, description="vLLM extension: vision settings for the request's videos."
    )
    stop: Any = Field(default=None, description="Not supported.")
    logprobs: bool | None = Field(default=None, description="Not supported (false or absent).")
    top_logprobs: Any = Field(default=None, description="Not supported.")
    logit_bias: Any = Field(default=None, description="Not supported.")
    frequency_penalty: float | None = Field(default=None, description="Not supported (0 or absent).")
    response_format: Any = Field(default=None, description="Not supported.")
    tools: Any = Field(default=None, description="Not supported.")
    tool_choice: Any = Field(default=None, description="Not supported.")
    functions: Any = Field(default=None, description="Not supported.")
    function_call: Any = Field(default=None, description="Not supported.")
    stream_options: Any = Field(default=None, description="Not supported.")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("stream")
    @classmethod
    def _no_streaming(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("streaming is not supported by this server; send stream=false")
        return value

    @field_validator(*_UNSUPPORTED)
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value not in (None, False, 0, [], {}):
            raise ValueError("is not supported by this server")
        return value

    @model_validator(mode="after")
    def _one_token_limit(self) -> Self:
        limits = {self.max_tokens, self.max_completion_tokens} - {None}
        if len(limits) > 1:
            raise ValueError("max_tokens and max_completion_tokens disagree; give one of them")
        return self


class ResponseMessage(BaseModel):
    """The generated turn."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    """The one answer of a completion."""

    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    """Token counts; ``prompt_tokens`` includes the video's tokens (0 when the backend cannot tell)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """Response of ``POST /v1/chat/completions``."""

    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "cookbook-infer"


class ModelList(BaseModel):
    """Response of ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    """The ``error`` object of an OpenAI error response."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """What every failed request gets back, with an HTTP status of 4xx or 5xx."""

    error: ErrorBody
