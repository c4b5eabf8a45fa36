"""An OpenAI-compatible chat-completions server in front of any :class:`~cookbook_infer.backends.base.Backend`.

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /healthz`` (the last one never asks for
the API key, so container health checks need no secret). FastAPI's documentation (``/docs``, ``/redoc``,
``/openapi.json``) asks for the key as the ``/v1`` endpoints do.

A request's content parts are OpenAI ``text`` parts, vLLM ``video_url`` parts and the Qwen-VL ``video`` parts of
:mod:`cookbook_data.schemas`::

    {"type": "video_url", "video_url": {"url": "file:///data/clip.mp4"}}
    {"type": "video", "video": "/data/clip.mp4", "fps": 2, "max_pixels": 200704}

Videos are read from local files under the configured media roots only; a path outside them is refused with
403, and http(s) or data URLs with 400 (download the video next to the server first). The vision settings of a
video are, from weakest to strongest: the server's defaults (:attr:`ServeSettings.vision`), the request's
``mm_processor_kwargs`` (vLLM's extension: ``fps``, ``nframes``, ``max_strided_frames``, ``min_frames``,
``max_frames``, ``min_pixels``, ``max_pixels``, ``total_pixels``), and the fields of a ``video`` part itself.
A frame rule (``fps``, ``nframes`` or ``max_strided_frames``) chosen at one level clears the frame rule of a
weaker one.

Sampling fields a request leaves out take :attr:`ServeSettings.sampling` (greedy by default, unlike OpenAI's
temperature 1). ``n`` must be 1 and ``stream`` false: streaming is not supported, and a request asking for it
gets a 400 response. Errors use OpenAI's body ``{"error": {"message", "type", "param", "code"}}``, FastAPI's own
refusals included (an unknown route 404, a wrong method 405, a body that is not a JSON object 400); invalid
fields get 400, as with OpenAI and vLLM (not FastAPI's 422), with ``param`` naming the field. ``/openapi.json``
lists each endpoint's refusals in that body (401 only with an API key, 429 only with ``max_queue``).
``finish_reason`` is ``"length"`` when the token limit cut the answer off and ``"stop"`` when it ended by
itself; ``usage.prompt_tokens`` counts the prompt's tokens, video tokens included.

One request holds the model's only thread while it generates, so the work it may ask for is bounded: more new
tokens than :attr:`ServeSettings.max_tokens_limit`, more frames of a video than ``max_frames_limit`` (its
``nframes``, ``max_strided_frames`` or, sampling by fps, ``max_frames``) or a ``min_pixels`` (which enlarges
every frame) above ``min_pixels_limit`` get a 400 response naming the field and the limit.

Concurrent requests with the same sampling settings are batched by :mod:`cookbook_infer.batching`: the oldest
waiting request waits at most ``max_wait_ms`` for others to join it, up to ``max_batch_size`` conversations go
to one ``backend.generate`` call on one worker thread, and a failed batch is retried request by request. With
``max_queue`` set, a request arriving when that many wait is answered 429 at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError, model_validator
from starlette.exceptions import HTTPException

from cookbook_data.schemas import (
    AssistantMessage,
    ContentPart,
    Conversation,
    Message,
    Strict,
    SystemMessage,
    TextPart,
    UserMessage,
    VideoPart,
)
from cookbook_data.video import MAX_TOKENS_PER_FRAME, VideoDecodeError, VisionSettings
from cookbook_data.vision_options import DEFAULT_FPS
from cookbook_infer._openai_schema import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ErrorBody,
    ErrorResponse,
    ModelCard,
    ModelList,
    RequestMessage,
    ResponseMessage,
    Usage,
    VideoUrlPart,
)
from cookbook_infer.access import BearerToken, MediaRefused, bearer_token_matches, local_media
from cookbook_infer.backends.base import Backend, Generation, SamplingSettings
from cookbook_infer.batching import DynamicBatcher, QueueFull, ShuttingDown
from cookbook_infer.frame_rules import layer_vision
from cookbook_infer.guarded_app import guarded_app
from cookbook_infer.refusals import describe_problems, describe_refusal, problem_field

__all__ = ["ServeSettings", "create_app", "run_server"]

logger = logging.getLogger(__name__)

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

_INPUT_ERRORS = (VideoDecodeError, ValueError, FileNotFoundError)
"""Backend errors caused by what a request sent (a broken video, settings the video cannot meet): 400, not 500."""


def _over_limit(name: str, value: int, limit: str, allowed: int) -> str | None:
    """Why ``value`` of setting ``name`` is refused, when it is above the server's setting ``limit``."""
    if value <= allowed:
        return None
    return f"{name} {value} is above this server's limit ({limit} = {allowed})"


def _frame_bound(vision: VisionSettings) -> tuple[str, int]:
    """The setting that bounds how many frames ``vision`` takes from a video of any length, and its value:
    ``nframes`` and ``max_strided_frames`` name their count, sampling by fps stops at ``max_frames``."""
    for rule in ("nframes", "max_strided_frames"):
        if (value := getattr(vision, rule)) is not None:
            return rule, value
    return "max_frames", vision.max_frames


class ServeSettings(Strict):
    """Settings of the OpenAI-compatible server."""

    model_id: str | None = Field(
        default=None,
        min_length=1,
        description="Name clients send as `model` and `GET /v1/models` lists (default: the backend's model id).",
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 for all).")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on (0 picks a free one).")
    max_batch_size: int = Field(default=8, gt=0, description="Most conversations generated in one batch.")
    max_wait_ms: float = Field(
        default=10.0, ge=0, description="Longest time a request waits for others to join its batch."
    )
    max_queue: int | None = Field(
        default=None, gt=0, description="Most requests waiting for a batch; more are answered 429 (None: no limit)."
    )
    vision: VisionSettings = Field(
        default_factory=lambda: VisionSettings(fps=DEFAULT_FPS),
        description="Vision settings of videos whose request sets none (`patch_factor` is the model's own).",
    )
    sampling: SamplingSettings = Field(
        default_factory=SamplingSettings,
        description="Sampling settings for fields a request leaves out (default: greedy, 512 new tokens).",
    )
    media_roots: list[Path] = Field(
        default_factory=list,
        description="Folders whose files requests may name (file:// URLs or absolute paths); none: no files.",
    )
    api_key: BearerToken | None = Field(
        default=None, description="When set, /v1 endpoints and the docs require `Authorization: Bearer <api_key>`."
    )
    log_level: LogLevel = Field(default="info", description="Log level of the HTTP server.")
    max_tokens_limit: int = Field(
        default=4096,
        gt=0,
        description="Most new tokens a request may ask for (the Cosmos Reason presets' budget); more is a 400.",
    )
    max_frames_limit: int = Field(
        default=768,
        gt=0,
        description="Most frames a request may have sampled from one video (its nframes, max_strided_frames or "
        "max_frames); more is a 400.",
    )
    min_pixels_limit: int = Field(
        default=MAX_TOKENS_PER_FRAME * 32 * 32,
        gt=0,
        description="Largest min_pixels (a frame's least area, which enlarges every frame) a request may ask for; "
        "more is a 400. Default: the largest frame Reason2 is otherwise resized to.",
    )

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> Self:
        """A default above a limit would have every request that leaves the setting out refused."""
        if problem := self.vision_over_limits(self.vision):
            raise ValueError(f"vision: {problem}")
        if problem := self.tokens_over_limit("max_new_tokens", self.sampling.max_new_tokens):
            raise ValueError(f"sampling: {problem}")
        return self

    def vision_over_limits(self, vision: VisionSettings) -> str | None:
        """Why ``vision`` asks for more frames or larger ones than this server allows, or None."""
        rule, frames = _frame_bound(vision)
        if problem := _over_limit(rule, frames, "max_frames_limit", self.max_frames_limit):
            return problem
        if vision.min_pixels is None:
            return None
        return _over_limit("min_pixels", vision.min_pixels, "min_pixels_limit", self.min_pixels_limit)

    def tokens_over_limit(self, name: str, tokens: int) -> str | None:
        """Why ``tokens`` new tokens (asked for by setting ``name``) are more than this server allows, or None."""
        return _over_limit(name, tokens, "max_tokens_limit", self.max_tokens_limit)


class APIError(Exception):
    """A request that cannot be served, answered with an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))


def _error_response(error: APIError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body.model_dump(), status_code=error.status, headers=headers)


# ---------------------------------------------------------------------------------------------------------------
# Requests -> conversations and sampling settings


def _local_video(reference: str, roots: Sequence[Path], param: str) -> Path:
    """The file a video reference names, if it lies under one of ``roots`` (symbolic links resolved)."""
    try:
        return local_media(reference, roots)
    except MediaRefused as refused:
        raise APIError(refused.status, f"{param}: {refused}", param=param) from None


@dataclass(frozen=True)
class _Translator:
    """Turns validated requests into the backend's conversations and sampling settings, within the limits of
    ``settings``."""

    settings: ServeSettings
    roots: tuple[Path, ...]

    def conversation(self, request: ChatCompletionRequest) -> Conversation:
        request_vision = (
            request.mm_processor_kwargs.model_dump(exclude_none=True) if request.mm_processor_kwargs else {}
        )
        messages = [
            self._message(message, request_vision, f"messages.{index}")
            for index, message in enumerate(request.messages)
        ]
        return Conversation(messages=messages)

    def _message(self, message: RequestMessage, request_vision: dict[str, Any], where: str) -> Message:
        content: str | list[ContentPart]
        if isinstance(message.content, str):
            content = message.content
        else:
            content = []
            for index, part in enumerate(message.content):
                param = f"{where}.content.{index}"
                if isinstance(part, TextPart):
                    content.append(part)
                elif isinstance(part, VideoUrlPart):
                    path = _local_video(part.video_url.url, self.roots, f"{param}.video_url.url")
                    content.append(self._video_part(path, request_vision, {}, param))
                elif isinstance(part, VideoPart):
                    path = _local_video(part.video, self.roots, f"{param}.video")
                    own = part.model_dump(exclude={"type", "video"}, exclude_none=True)
                    content.append(self._video_part(path, request_vision, own, param))
        if message.role in ("system", "developer"):
            return SystemMessage(content=content)
        if message.role == "user":
            return UserMessage(content=content)
        return AssistantMessage(content=content)

    def _video_part(self, path: Path, request_vision: dict[str, Any], own: dict[str, Any], param: str) -> VideoPart:
        try:
            vision = VisionSettings.model_validate(layer_vision(self.settings.vision.model_dump(), request_vision, own))
        except ValidationError as error:
            raise APIError(400, f"{param}: {describe_problems(error.errors())}", param=param) from None
        if problem := self.settings.vision_over_limits(vision):
            raise APIError(400, f"{param}: {problem}", param=param)
        return vision.video_part(str(path))

    def sampling_for(self, request: ChatCompletionRequest) -> SamplingSettings:
        given: dict[str, Any] = {
            "max_new_tokens": request.max_completion_tokens or request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "presence_penalty": request.presence_penalty,
            "seed": request.seed,
        }
        updates = {name: value for name, value in given.items() if value is not None}
        if request.top_k is not None:
            updates["top_k"] = request.top_k if request.top_k > 0 else None
        try:
            sampling = SamplingSettings.model_validate(self.settings.sampling.model_dump() | updates)
        except ValidationError as error:
            raise APIError(400, describe_problems(error.errors())) from None
        asked_by = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        if problem := self.settings.tokens_over_limit(asked_by, sampling.max_new_tokens):
            raise APIError(400, problem, param=asked_by)
        return sampling


# ---------------------------------------------------------------------------------------------------------------
# The app


def create_app(backend: Backend, settings: ServeSettings) -> FastAPI:
    """The FastAPI application serving ``backend`` with ``settings`` (run it with any ASGI server)."""
    model_name = settings.model_id or backend.model_id
    created = int(time.time())
    translator = _Translator(settings, roots=tuple(root.expanduser().resolve() for root in settings.media_roots))
    batcher: DynamicBatcher[Conversation, Generation, SamplingSettings] = DynamicBatcher(
        lambda sampling, conversations: backend.generate(conversations, sampling),
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
        thread_name="cookbook-infer-generate",
    )
    api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.close()

    async def authorize(request: Request) -> None:
        if api_key is None:
            return
        if not bearer_token_matches(request.headers.get("authorization"), api_key):
            raise APIError(
                401,
                "invalid or missing API key (Authorization: Bearer ...)",
                kind="authentication_error",
                code="invalid_api_key",
            )

    app = guarded_app(
        authorize,
        ErrorResponse,
        token_required=api_key is not None,
        title="cookbook-infer",
        summary=f"OpenAI-compatible chat completions for {model_name}",
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        """A body that is not JSON or fails validation: 400 as OpenAI and vLLM answer it, not FastAPI's 422."""
        problems = list(error.errors())
        param = problem_field(problems[0], error.body) if problems else None
        return _error_response(APIError(400, describe_problems(problems, error.body), param=param))

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, error: HTTPException) -> JSONResponse:
        """The router's own refusals (no such route, no such method, a body that cannot be parsed) in OpenAI's
        body rather than FastAPI's ``{"detail": ...}``, keeping their headers (a 405's ``Allow``)."""
        kind = "server_error" if error.status_code >= 500 else "invalid_request_error"
        refused = APIError(error.status_code, describe_refusal(request, error), kind=kind)
        return _error_response(refused, error.headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the model name and how many requests wait for a batch."""
        return {"status": "ok", "model": model_name, "queued": batcher.queued}

    @app.get("/v1/models", **app.guarded({}))
    async def models() -> ModelList:
        """The one model this server answers with."""
        return ModelList(data=[ModelCard(id=model_name, created=created)])

    @app.post("/v1/chat/completions", **app.guarded(_CHAT_REFUSALS | _busy(settings)))
    async def chat_completions(request: ChatCompletionRequest) -> ChatCompletion:
        """Answer a conversation with text and video parts (no streaming, one choice)."""
        if request.model != model_name:
            raise APIError(
                404,
                f"model: {request.model!r} is not served here (this server serves {model_name!r})",
                param="model",
                code="model_not_found",
            )
        conversation = translator.conversation(request)
        sampling = translator.sampling_for(request)
        try:
            generation = await batcher.submit(conversation, sampling.model_dump_json(), sampling)
        except QueueFull as error:
            raise APIError(429, f"server busy: {error}; retry later", kind="rate_limit_error") from None
        except ShuttingDown as error:
            raise APIError(503, str(error), kind="server_error") from None
        except _INPUT_ERRORS as error:
            raise APIError(400, str(error), param="messages") from None
        except Exception as error:
            logger.exception("generation failed")
            raise APIError(500, f"generation failed: {type(error).__name__}: {error}", kind="server_error") from None
        finish: Literal["stop", "length"] = "length" if generation.truncated else "stop"
        prompt_tokens = generation.num_prompt_tokens or 0
        return ChatCompletion(
            model=model_name,
            choices=[Choice(message=ResponseMessage(content=generation.text), finish_reason=finish)],
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=generation.num_generated_tokens,
                total_tokens=prompt_tokens + generation.num_generated_tokens,
            ),
        )

    return app


_CHAT_REFUSALS = {
    400: "A body that is not a JSON object, a field that fails validation (`param` names it), streaming or n > 1, "
    "a video that cannot be read, or more tokens, frames or pixels than the server's limits.",
    403: "A video outside the server's media roots.",
    404: "A `model` this server does not serve.",
    500: "Generation failed.",
    503: "The server is shutting down.",
}
"""The refusals of ``POST /v1/chat/completions`` whatever the settings, in OpenAI's error body."""


def _busy(settings: ServeSettings) -> dict[int, str]:
    """The 429 a full queue answers, when the queue has a limit."""
    if settings.max_queue is None:
        return {}
    return {429: f"More than max_queue ({settings.max_queue}) requests wait for a batch; retry later."}


def run_server(backend: Backend, settings: ServeSettings) -> None:
    """Serve ``backend`` on ``settings.host:settings.port`` until interrupted."""
    import uvicorn

    uvicorn.run(create_app(backend, settings), host=settings.host, port=settings.port, log_level=settings.log_level)
