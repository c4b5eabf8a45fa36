"""`cookbook-reward serve`: a scorer behind HTTP, for RL trainers and curation pipelines.

Endpoints:

- ``POST /v1/score``: a :class:`~cookbook_reward.protocol.RewardRequest` (videos by path under the media roots or
  uploaded as base64, with captions / rules / waypoints) answered by a :class:`~cookbook_reward.protocol.
  RewardResponse`: per item the 0-1 reward, the scorer's score, per-component rewards and the critique, or the
  item's error. One bad video fails its item, not the request.
- ``POST /get_reward``: OpenRLHF's remote reward-model protocol (``query`` = video references).
- ``GET /healthz`` (liveness, queue depth) and ``GET /metrics`` (Prometheus text); neither asks for the token.

Each item's video is decoded and resized for the model as soon as its request arrives, by ``prepare_workers``
worker processes (each with the scorer described without its model), so the model's thread spends its time on
the model, and the decoding of concurrent requests runs in parallel without contending for this process's
interpreter or its torch threads (without a description, the scorer's own ``prepare`` runs on threads).
Prepared items of concurrent requests are then batched
(:mod:`cookbook_infer.batching`): up to ``max_batch_size`` items per scorer call, waiting at most
``max_wait_ms`` for company. At most ``max_queue`` items wait (being prepared or for a batch); a request that
would exceed it gets 429 with ``Retry-After`` at once, and 503 while the service shuts down. A request that
takes longer than ``request_timeout_s`` gets 504; one whose client disconnects first (a trainer that gave up)
withdraws its items at once, so that they neither hold places in the queue nor reach the model. Bodies above
``max_request_bytes`` get 413, uploads above ``max_upload_bytes`` fail their item. Malformed JSON or fields get
400 with the field named; the server never crashes on them. Every refusal, FastAPI's own (404, 405, a body that
cannot be parsed) included, answers ``{"error": {"message", "status"}}`` (:class:`ErrorResponse`), and
``/openapi.json`` lists the scoring endpoints' refusals in that shape. With a token configured, the scoring
endpoints and FastAPI's documentation (``/docs``, ``/redoc``, ``/openapi.json``) need ``Authorization: Bearer
<token>`` (compared in constant time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import multiprocessing
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cookbook_data.cpus import threads_for
from cookbook_data.schemas import ScoreRecord, Strict, VideoSample
from cookbook_infer.access import MediaRefused, bearer_token_matches, local_media
from cookbook_infer.batching import DynamicBatcher, QueueFull, ShuttingDown
from cookbook_infer.guarded_app import guarded_app
from cookbook_infer.refusals import describe_problems, describe_refusal
from cookbook_infer.run import Item, Prepares
from cookbook_reward.config import RewardServiceSettings
from cookbook_reward.health import address_noted, local_url
from cookbook_reward.protocol import (
    ItemScore,
    OpenRLHFRequest,
    OpenRLHFResponse,
    RewardItem,
    RewardRequest,
    RewardResponse,
)
from cookbook_reward.scorers import Scorer, reward_of

logger = logging.getLogger(__name__)


class _ServiceError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class ErrorDetail(Strict):
    """What went wrong with a refused request."""

    message: str = Field(description="The cause in one line, naming the field, limit or route concerned.")
    status: int = Field(description="The HTTP status of the response, repeated.")


class ErrorResponse(Strict):
    """The body of every refused request, whatever refused it (the service, FastAPI's router, a limit)."""

    error: ErrorDetail


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(message=message, status=status))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


_SCORING_REFUSALS = {
    400: "JSON that does not parse (the message says where) or a field that fails validation (named).",
    413: "A body over max_request_bytes, or more items than max_queue in one request.",
    429: "The items would make more than max_queue wait; retry after the `Retry-After` seconds.",
    503: "The service is shutting down.",
    504: "Scoring took longer than request_timeout_s.",
}
"""The refusals of the scoring endpoints, in :class:`ErrorResponse` (a request whose client disconnected gets
499, which no client reads)."""


_GONE_BEFORE_BODY = "the client disconnected before sending its whole request body"


class _BodyLimit:
    """ASGI middleware answering 413 at once to a body that declares a length over ``limit`` bytes. A body of
    undeclared length (chunked) is held to the limit as the endpoint reads it (:func:`_parsed`), after the token
    check: read here, an unknown client's body would be taken in whole before it is refused."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length") if scope["type"] == "http" else None
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _error(413, _over_limit(self.limit))(scope, receive, send)
        else:  # the server holds a body to its declared length, so a length within the limit is all the check
            await self.app(scope, receive, send)


def _over_limit(limit: int) -> str:
    return f"request body over {limit} bytes (--set service.max_request_bytes=N raises the limit)"


class _Metrics:
    """Prometheus metrics of one app (own registry, so several apps in a process do not collide)."""

    def __init__(self, queued: Callable[[], int], preparing: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cookbook_reward_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "cookbook_reward_request_seconds", "Request latency", ["endpoint"], registry=self.registry
        )
        self.items = Counter(
            "cookbook_reward_items",
            "Items by outcome: scored, error, or withdrawn (their client disconnected first)",
            ["outcome"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "cookbook_reward_batch_size",
            "Items per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        Gauge("cookbook_reward_queue_depth", "Items waiting for a batch", registry=self.registry).set_function(queued)
        Gauge("cookbook_reward_preparing", "Items admitted, videos being decoded", registry=self.registry).set_function(
            preparing
        )

    def render(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _Counted:
    """ASGI middleware counting requests by endpoint and status and timing them.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's request/response middleware runs each
    request through an extra task and memory streams, which nearly doubled the interpreter time the service
    spends per request, time the model's thread waits for under load.
    """

    def __init__(self, app: ASGIApp, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            endpoint = scope["path"] if scope["path"] in _ENDPOINTS else "other"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


class _Uploads:
    """Uploaded videos, written to a private folder for the scorer to read and removed when scored."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._folder = tempfile.TemporaryDirectory(prefix="cookbook-reward-uploads-")

    async def save(self, encoded: str) -> Path:
        """The upload decoded into a file of the folder, on a worker thread: decoding and writing tens of MiB on
        the event loop would hold up every other request (a 64 MiB upload took 0.4 s on the 2-core CPU). If
        the request is cancelled meanwhile, the file is removed once written."""
        saving = asyncio.get_running_loop().run_in_executor(None, self._save, encoded)
        try:
            return await asyncio.shield(saving)
        except asyncio.CancelledError:
            saving.add_done_callback(_remove_saved)
            raise

    def _save(self, encoded: str) -> Path:
        if len(encoded) > _longest_text(self.limit):  # refused before any pass over hundreds of MiB
            raise ValueError(f"video_base64: the upload is over {self.limit} bytes")
        encoded = _base64_payload(encoded)
        if len(encoded) > 4 * (self.limit // 3 + 1):
            raise ValueError(f"video_base64: the upload is over {self.limit} bytes")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("video_base64: not valid base64") from None
        if len(data) > self.limit:
            raise ValueError(f"video_base64: the upload is {len(data)} bytes, over the {self.limit} byte limit")
        path = Path(self._folder.name) / f"{uuid.uuid4().hex}.mp4"
        path.write_bytes(data)
        return path

    def close(self) -> None:
        self._folder.cleanup()


def _longest_text(limit: int) -> int:
    """More characters than an upload of ``limit`` bytes can take as any client writes it: its base64 with up
    to one whitespace character after each (wrapping of any width, CRLF line ends), after a ``data:`` URL's
    header. Only a text longer than this is refused unread; one between it and the exact limit is read."""
    return 2 * 4 * (limit // 3 + 1) + 1024


def _base64_payload(encoded: str) -> str:
    """The base64 characters of an upload as clients write it: a ``data:`` URL's payload (browsers, OpenAI-style
    clients) and lines wrapped by ``base64`` (GNU coreutils wraps at 76 characters) are accepted."""
    if encoded.startswith("data:"):
        header, comma, payload = encoded.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ValueError("video_base64: a data: URL must be base64 (data:video/mp4;base64,...)")
        encoded = payload
    return "".join(encoded.split())


def _remove_saved(saving: asyncio.Future[Path]) -> None:
    if not saving.cancelled() and saving.exception() is None:
        saving.result().unlink(missing_ok=True)


_worker: dict[str, Prepares] = {}
"""In a prepare worker process: ``"described"``, the scorer described without its model."""


def _start_prepare_worker(describe: Callable[[], Prepares]) -> None:
    """Initializer of a prepare worker process: the scorer described once, and torch on one thread (the workers
    share the CPUs; torch's default of one thread per CPU in each would oversubscribe them many times over).
    Ctrl-C is left to the service, which stops its workers as it shuts down (instead of each printing a
    KeyboardInterrupt traceback)."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _worker["described"] = describe()


def _prepare_in_worker(sample: VideoSample) -> Item:
    return _worker["described"].prepare(sample)


def _worker_ready() -> bool:
    return "described" in _worker


class _Admitted:
    """A request's items from the moment it is admitted until each is handed to the batcher (or fails before):
    counted in ``preparing`` all along, so that requests arriving together cannot all pass the queue check
    before any of their items is counted. Each item is released once, by its own task or, for a task cancelled
    before it ran, when the request ends."""

    def __init__(self, scoring: _Scoring, count: int) -> None:
        self._scoring = scoring
        self._held = set(range(count))
        scoring.preparing += count

    def release(self, index: int) -> None:
        if index in self._held:
            self._held.remove(index)
            self._scoring.preparing -= 1

    def release_all(self) -> None:
        self._scoring.preparing -= len(self._held)
        self._held.clear()


class _Scoring:
    """Items in, ItemScores out: references checked, uploads saved and removed, videos prepared on arrival, items
    batched with those of concurrent requests, and the request-level limits (queue, timeout) enforced."""

    def __init__(
        self,
        scorer: Scorer,
        settings: RewardServiceSettings,
        metrics: _Metrics,
        describe: Callable[[], Prepares] | None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.roots = tuple(root.expanduser().resolve() for root in settings.media_roots)
        self.uploads = _Uploads(settings.max_upload_bytes)
        self.preparing = 0
        self.prepare_workers = settings.prepare_workers or threads_for(settings.max_queue)
        self._describe = describe
        self._prepare_one: Callable[[VideoSample], Item] = scorer.prepare if describe is None else _prepare_in_worker
        self._prepare_pool = self._new_pool()
        self.batcher: DynamicBatcher[Item, ScoreRecord, None] = DynamicBatcher(
            lambda _, samples: scorer.score(samples),
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue=settings.max_queue,
            on_batch=metrics.batch_size.observe,
            thread_name="cookbook-reward-score",
        )

    async def _sample(self, item: RewardItem, item_id: str) -> tuple[VideoSample, Path | None]:
        """The item as a VideoSample, and its uploaded file (to remove afterwards; saved last, so that nothing
        after it can fail and leave it behind)."""
        metadata: dict[str, Any] = {}
        if item.rule is not None:
            metadata["rule"] = item.rule
        if isinstance(item.trajectory, str):  # a waypoint file: held to the media roots like a video
            try:
                metadata["trajectory"] = str(local_media(item.trajectory, self.roots))
            except MediaRefused as refused:  # its type tells clients a path, not the content, failed the item
                raise MediaRefused(refused.status, f"trajectory: {refused}") from None
        elif item.trajectory is not None:
            metadata["trajectory"] = item.trajectory
        if item.video_base64 is None:
            path = local_media(item.video or "", self.roots)
            return VideoSample(id=item_id, path=str(path), caption=item.caption, metadata=metadata), None
        uploaded = await self.uploads.save(item.video_base64)
        return VideoSample(id=item_id, path=str(uploaded), caption=item.caption, metadata=metadata), uploaded

    def _new_pool(self) -> Executor:
        if self._describe is None:
            return ThreadPoolExecutor(self.prepare_workers, thread_name_prefix="cookbook-reward-prepare")
        return ProcessPoolExecutor(
            self.prepare_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_prepare_worker,
            initargs=(self._describe,),
        )

    @property
    def waiting(self) -> int:
        """Items accepted and not yet in a model call: being prepared or waiting for a batch."""
        return self.preparing + self.batcher.queued

    async def _prepare(self, sample: VideoSample) -> Item:
        """``sample`` with its video decoded for the model, on the prepare pool (a bad video raises here). A dead
        worker process fails the items it held and the pool is replaced, so one crash does not stop scoring."""
        pool = self._prepare_pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, self._prepare_one, sample)
        except BrokenProcessPool:
            if pool is self._prepare_pool:  # the first item to see it replaces the pool; the others just fail
                logger.error("a prepare worker process died; starting a new pool")
                pool.shutdown(wait=False, cancel_futures=True)
                self._prepare_pool = self._new_pool()
            raise RuntimeError(
                f"{sample.path}: the worker process decoding it died (killed, out of memory, or the file crashed "
                "the decoder); the service goes on with new workers"
            ) from None

    async def _one(self, item: RewardItem, index: int, admitted: _Admitted) -> ItemScore:
        item_id = item.id or str(index)
        uploaded = None
        try:
            try:
                video, uploaded = await self._sample(item, item_id)
                ready = await self._prepare(video)
            finally:
                admitted.release(index)
            record = await self.batcher.submit(ready)
        except (QueueFull, ShuttingDown):
            raise
        except Exception as error:
            self.metrics.items.labels("error").inc()
            return ItemScore(id=item_id, error=f"{type(error).__name__}: {error}")
        finally:
            if uploaded is not None:
                uploaded.unlink(missing_ok=True)
        self.metrics.items.labels("scored").inc()
        return ItemScore(
            id=item_id,
            reward=reward_of(record),
            score=record.score,
            expected_score=record.expected_score,
            rewards=record.rewards,
            probabilities=record.probabilities,
            critique=record.critique,
        )

    async def score(self, items: Sequence[RewardItem], receive: Receive) -> list[ItemScore]:
        """Every item's outcome, in order; raises :class:`_ServiceError` for 413, 429, 499 (the client
        disconnected, as ``receive``, the request's, tells once its body is read), 503 and 504. A request that
        ends early cancels its items, which gives their places back at once."""
        limit = self.settings.max_queue
        if len(items) > limit:
            raise _ServiceError(
                413, f"{len(items)} items in one request; this service takes at most {limit} at once (--max-queue)"
            )
        if self.waiting + len(items) > limit:
            raise _ServiceError(429, f"busy: {self.waiting} items waiting, limit {limit}", RETRY_LATER)
        admitted = _Admitted(self, len(items))
        tasks = [asyncio.ensure_future(self._one(item, index, admitted)) for index, item in enumerate(items)]
        scored = asyncio.ensure_future(_all_within(tasks, self.settings.request_timeout_s))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((scored, gone), return_when=asyncio.FIRST_COMPLETED)
            if not scored.done():
                gone.result()  # an error of the server's connection is raised, not taken for a disconnect
                withdrawn = sum(not task.done() for task in tasks)
                self.metrics.items.labels("withdrawn").inc(withdrawn)
                raise _ServiceError(499, f"the client disconnected; {withdrawn} items withdrawn")
            return list(scored.result())
        except QueueFull as error:
            raise _ServiceError(429, f"busy: {error}", RETRY_LATER) from None
        except ShuttingDown as error:
            raise _ServiceError(503, str(error)) from None
        except TimeoutError:
            raise _ServiceError(504, f"scoring took longer than {self.settings.request_timeout_s} s") from None
        finally:
            scored.cancel()
            gone.cancel()
            for task in tasks:
                task.cancel()
            admitted.release_all()

    async def start(self) -> None:
        """Start every prepare worker process now, so the first requests do not wait for them."""
        if isinstance(self._prepare_pool, ProcessPoolExecutor):
            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(loop.run_in_executor(self._prepare_pool, _worker_ready) for _ in range(self.prepare_workers))
            )

    async def close(self) -> None:
        await self.batcher.close()
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)
        self.uploads.close()


RETRY_LATER = {"Retry-After": "1"}


async def _all_within(tasks: Sequence[asyncio.Future[ItemScore]], seconds: float) -> list[ItemScore]:
    """The results of ``tasks``, or TimeoutError after ``seconds``; the first of their errors, at once. Run as a
    task of its own, so that the request can race it against its client's disconnect: cancelled, it cancels
    the tasks and retrieves their gathering's outcome (``wait_for`` would leave it to be logged as lost)."""
    async with asyncio.timeout(seconds):
        return await asyncio.gather(*tasks)


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has disconnected. ``receive`` is a request's, called once its whole body has been
    read, so what it has left to give is ``http.disconnect``: when the client closes the connection
    (uvicorn; Ray Serve's proxy passes it on), or once the response is sent."""
    while (await receive())["type"] != "http.disconnect":
        pass  # an empty body message, pending since the body's last part


_Body = TypeVar("_Body", bound=BaseModel)


async def _parsed(request: Request, model: type[_Body], limit: int) -> _Body:
    """The request's body as ``model``, refused as FastAPI refuses a body parameter's (400s, answered by the
    app's handlers), or with 413 once it runs over ``limit`` bytes. Its parts are gathered as they arrive and
    joined, parsed and validated on a worker thread: FastAPI does all that on the event loop, where a 200 MiB
    upload held every other request, health checks included, for up to a second."""
    parts: list[bytes] = []
    seen = 0
    try:
        async for part in request.stream():
            seen += len(part)
            if seen > limit:
                raise _ServiceError(413, _over_limit(limit))
            parts.append(part)
    except ClientDisconnect:
        raise _ServiceError(499, _GONE_BEFORE_BODY) from None
    return await asyncio.to_thread(_validated, model, parts, request.headers.get("content-type"))


def _validated(model: type[_Body], parts: list[bytes], content_type: str | None) -> _Body:
    """``model`` from the body's ``parts``, by pydantic's JSON parser (which builds no Python objects on the way,
    in a third of the time ``json.loads`` takes). A body it refuses is parsed and validated again as FastAPI
    did, so that what FastAPI took (byte-order marks, UTF-16, deep nesting) is still taken and its refusals keep
    their wording (a Python ``list``, not a JSON array)."""
    body = b"".join(parts)
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    value: Any = body  # as FastAPI does for other media types: the bytes, which no model takes
    if _is_json(content_type):
        try:
            return model.model_validate_json(body)
        except ValidationError:
            value = _loaded(body)
    try:
        return model.model_validate(value, from_attributes=True)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        raise RequestValidationError([{**problem, "loc": ("body", *problem["loc"])} for problem in problems]) from None


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this media type as JSON: ``application/json`` or ``application/*+json``."""
    maintype, _, subtype = (content_type or "").partition(";")[0].strip().lower().partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def _loaded(body: bytes) -> Any:
    """``body`` parsed by ``json.loads``, its errors raised as FastAPI raises them: a syntax error located by
    character, anything else (not UTF-8, nested too deep) as a 400 whose cause is the parser's reason."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        invalid = {"type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error", "input": {}}
        raise RequestValidationError([{**invalid, "ctx": {"error": error.msg}}]) from error
    except (ValueError, RecursionError) as error:
        raise HTTPException(400, "There was an error parsing the body") from error


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI description of a JSON body of ``model`` (``openapi_extra``: FastAPI does not see a body that
    the endpoint reads itself), its nested models written out in place (their ``$ref`` would point into a
    ``$defs`` that OpenAPI does not look in)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inlined(node: Any) -> Any:
        if isinstance(node, list):
            return [inlined(item) for item in node]
        if not isinstance(node, dict):
            return node
        own = {key: inlined(value) for key, value in node.items() if key != "$ref"}
        return {**inlined(definitions[node["$ref"].rpartition("/")[2]]), **own} if "$ref" in node else own

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inlined(schema)}}}}


def create_app(
    scorer: Scorer,
    settings: RewardServiceSettings,
    *,
    model: str | None = None,
    describe: Callable[[], Prepares] | None = None,
    noted_port: int | None = None,
) -> FastAPI:
    """The FastAPI application serving ``scorer`` (run it with any ASGI server).

    ``describe`` (picklable) builds the scorer without its model in each prepare worker process
    (:func:`cookbook_reward.score.described_scorer`); without it, ``scorer.prepare`` runs on threads of this
    process. With ``noted_port`` (the port the server listens on), the service's URL is in the health check's
    address file (:func:`~cookbook_reward.health.address_noted`) from the end of its startup (its prepare
    workers started) until it shuts down: a check finds no file, not a service too busy starting to answer.
    """
    token = settings.token.get_secret_value() if settings.token is not None else None
    metrics = _Metrics(lambda: scoring.batcher.queued, lambda: scoring.preparing)
    scoring = _Scoring(scorer, settings, metrics, describe)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await scoring.start()
        with address_noted(settings.host, noted_port) if noted_port is not None else nullcontext():
            yield
        await scoring.close()

    async def authorize(request: Request) -> None:
        if token is not None and not bearer_token_matches(request.headers.get("authorization"), token):
            raise _ServiceError(401, "invalid or missing token (Authorization: Bearer ...)")

    summary = f"Reason-as-Reward scoring ({scorer.kind})"
    app = guarded_app(
        authorize,
        ErrorResponse,
        token_required=token is not None,
        title="cookbook-reward",
        summary=summary,
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, limit=settings.max_request_bytes)
    app.add_middleware(_Counted, metrics=metrics)
    app.state.batcher = scoring.batcher

    @app.exception_handler(_ServiceError)
    async def _service_error(request: Request, error: _ServiceError) -> JSONResponse:
        return _error(error.status, str(error), error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(400, describe_problems(error.errors()))

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, describe_refusal(request, error), error.headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, the scorer, and the batcher's state."""
        stats = scoring.batcher.stats
        return {
            "status": "ok",
            "scorer": scorer.kind,
            "model": model,
            "queued": scoring.batcher.queued,
            "preparing": scoring.preparing,
            "prepare_workers": scoring.prepare_workers,
            "batches": stats.batches,
            "items": stats.items,
            "largest_batch": stats.largest_batch,
            "model_busy_s": round(stats.busy_s, 3),
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics: requests by endpoint and status, latency, items, batch sizes, queue depth."""
        return metrics.render()

    @app.post("/v1/score", **app.guarded(_SCORING_REFUSALS), openapi_extra=_request_body(RewardRequest))
    async def score(request: Request) -> RewardResponse:
        """Score a batch of videos; each item succeeds or fails on its own."""
        body = await _parsed(request, RewardRequest, settings.max_request_bytes)
        results = await scoring.score(body.items, request.receive)
        return RewardResponse(model=model, scorer=scorer.kind, results=results)

    @app.post("/get_reward", **app.guarded(_SCORING_REFUSALS), openapi_extra=_request_body(OpenRLHFRequest))
    async def get_reward(request: Request) -> OpenRLHFResponse:
        """OpenRLHF's remote reward protocol: one reward per query (a video reference)."""
        body = await _parsed(request, OpenRLHFRequest, settings.max_request_bytes)
        items = [
            RewardItem(
                video=query,
                caption=body.prompts[i] if body.prompts else None,
                rule=body.labels[i] if body.labels else None,
            )
            for i, query in enumerate(body.query)
        ]
        results = await scoring.score(items, request.receive)
        rewards = [settings.failure_reward if r.reward is None else r.reward for r in results]
        return OpenRLHFResponse(
            rewards=rewards,
            scores=rewards,
            extra_logs={"failed": [float(r.reward is None) for r in results]},
            errors=[None if r.reward is not None else r.error or "no score" for r in results],
        )

    return app


_ENDPOINTS = frozenset({"/v1/score", "/get_reward", "/healthz", "/metrics"})


def run_service(
    scorer: Scorer,
    settings: RewardServiceSettings,
    *,
    model: str | None = None,
    describe: Callable[[], Prepares] | None = None,
) -> None:
    """Serve ``scorer`` on ``settings.host:settings.port`` until interrupted (``describe``: as :func:`create_app`).

    The socket is bound first, so that the URL the service notes for the health check once started
    (:mod:`cookbook_reward.health`) has the port really listened on, ``port = 0`` included.
    """
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.create_server((settings.host, settings.port), family=family) as listening:
        port = listening.getsockname()[1]
        app = create_app(scorer, settings, model=model, describe=describe, noted_port=port)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level)
        # uvicorn announces its address only for sockets it binds itself
        url = local_url(settings.host, port)
        logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", url)
        uvicorn.Server(config).run(sockets=[listening])
