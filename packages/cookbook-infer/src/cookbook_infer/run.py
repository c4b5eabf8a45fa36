"""`cookbook-infer run`: a model answers a task for every sample of a manifest, as a resumable batch job."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, Self

from pydantic import Field, model_validator

from cookbook_data.engines import EngineConfig, LocalEngineConfig
from cookbook_data.jobs import Job, JobReport, run_job
from cookbook_data.prompts import PromptTemplate
from cookbook_data.records import read_records
from cookbook_data.schemas import (
    Conversation,
    Prediction,
    Strict,
    VideoSample,
    check_one_frame_rule,
    given_frame_rules,
)
from cookbook_data.tasks import resolve_path
from cookbook_data.video import VisionSettings
from cookbook_infer.access import read_token_file
from cookbook_infer.backends.base import Backend, CandidateProbabilities, Generation, SamplingSettings
from cookbook_infer.frame_rules import layer_vision
from cookbook_infer.registry import Arch, ModelSpec, resolve_model
from cookbook_infer.tasks import InferenceTask, get_task
from cookbook_infer.vision import ModelVideo, model_videos

BackendName = Literal["transformers", "vllm", "openai"]


class PredictorConfig(Strict):
    """Which model answers which task, and how: everything but the data."""

    model: str = Field(description="Hub id (e.g. nvidia/Cosmos-Reason2-8B) or checkpoint folder.")
    arch: Arch | None = Field(default=None, description="reason1 or reason2; needed only for unknown models.")
    task: str = Field(default="critic", description="critic, critic-thinking, caption, vqa, ...")
    prompt: str | None = Field(default=None, description="Shipped prompt name or YAML file replacing the task's.")
    backend: BackendName = Field(default="transformers", description="transformers, vllm, or openai (a server).")
    base_url: str | None = Field(default=None, description="OpenAI-compatible server URL for --backend openai.")
    api_key_file: Path | None = Field(
        default=None,
        description="File holding the API key of the --backend openai server (else $OPENAI_API_KEY); a file, so "
        "that the key stays out of config.resolved.json and the shell's history.",
    )
    device: str = Field(default="auto", description="cpu, cuda, cuda:1 ... (auto: cuda when available).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(default="auto", description="Weights dtype.")
    max_new_tokens: int | None = Field(default=None, gt=0, description="Override the preset's token budget.")
    temperature: float | None = Field(default=None, ge=0, description="Override the preset (0 = greedy).")
    top_p: float | None = Field(default=None, gt=0, le=1, description="Override the preset's top_p.")
    top_k: int | None = Field(default=None, gt=0, description="Override the preset's top_k.")
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, description="Override the preset's.")
    seed: int = Field(default=0, description="Sampling seed.")
    fps: float | None = Field(default=None, gt=0, description="Override the model's frames per second.")
    nframes: int | None = Field(default=None, gt=0, description="Sample exactly this many frames instead.")
    max_strided_frames: int | None = Field(
        default=None, ge=2, description="Sample every k-th frame instead, at most this many (the reward model's way)."
    )
    max_pixels: int | None = Field(default=None, gt=0, description="Override the largest frame area.")
    total_pixels: int | None = Field(default=None, gt=0, description="Override the pixel budget per video.")

    @model_validator(mode="after")
    def _one_frame_rule(self) -> Self:
        """Refused here, naming the settings, rather than when the run builds its vision settings."""
        check_one_frame_rule(self)
        return self

    def vision(self, spec: ModelSpec) -> VisionSettings:
        """The model's frame sampling with this run's overrides (a frame rule given replaces the model's)."""
        sizes = {"max_pixels": self.max_pixels, "total_pixels": self.total_pixels}
        overrides = given_frame_rules(self) | {name: value for name, value in sizes.items() if value is not None}
        return VisionSettings.model_validate(layer_vision(spec.vision.model_dump(), overrides))

    def sampling(self, spec: ModelSpec, reasoning: bool) -> SamplingSettings:
        """The model's preset for the task, with this run's overrides. Greedy decoding (temperature 0) drops
        the preset's presence penalty unless this run sets one: Reason2's non-reasoning preset carries 1.5 for
        sampling, which in a greedy evaluation would only push the answer away from tokens already written."""
        preset = spec.reasoning_sampling if reasoning else spec.direct_sampling
        overrides = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "presence_penalty": self.presence_penalty,
        }
        sampling = preset.model_copy(update={k: v for k, v in overrides.items() if v is not None} | {"seed": self.seed})
        if sampling.temperature == 0 and self.presence_penalty is None:
            return sampling.model_copy(update={"presence_penalty": 0.0})
        return sampling


class RunConfig(PredictorConfig):
    """Everything a batch inference run depends on; written as config.resolved.json beside the output."""

    manifest: Path = Field(description="VideoSample JSONL manifest.")
    out: Path = Field(description="Predictions JSONL (appended to; reruns skip ids already there).")
    errors: Path | None = Field(default=None, description="Per-item errors (default: <out>.errors.jsonl).")
    batch_size: int = Field(default=8, ge=1, description="Samples per generate call.")
    workers: int = Field(default=1, ge=1, description="Batches prepared and run concurrently (local engine).")
    engine: EngineConfig = Field(
        default_factory=LocalEngineConfig, description="Where the batches run: local, or a Ray cluster."
    )

    def errors_path(self) -> Path:
        return self.errors or self.out.with_name(self.out.stem + ".errors.jsonl")


def make_backend(config: PredictorConfig, spec: ModelSpec) -> Backend:
    """The chosen backend; each imports its heavy dependencies only when chosen."""
    if config.backend == "openai":
        from cookbook_infer.backends.openai_client import OpenAIClientBackend

        if config.base_url is None:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        api_key = read_token_file(config.api_key_file) if config.api_key_file is not None else None
        return OpenAIClientBackend(spec.id, base_url=config.base_url, api_key=api_key)
    if config.backend == "vllm":
        from cookbook_infer.backends.vllm import VLLMBackend

        return VLLMBackend(spec.id, dtype=config.dtype, seed=config.seed)
    from cookbook_infer.backends.transformers import TransformersBackend

    return TransformersBackend(spec.id, device=config.device, dtype=config.dtype)


@dataclass(frozen=True)
class PreparedSample:
    """A sample whose video parts are already decoded and resized for the model, in the order its conversation
    holds them: what a batch job's CPU step (``prepare``, a Ray task on the Ray engine) hands the model's worker,
    so the worker spends its time on the model."""

    sample: VideoSample
    videos: tuple[ModelVideo, ...]

    @property
    def id(self) -> str:
        return self.sample.id


Item = VideoSample | PreparedSample
"""What the model-running jobs take: a sample, or a sample already prepared."""


def sample_of(item: Item) -> VideoSample:
    """The sample an item is about."""
    return item.sample if isinstance(item, PreparedSample) else item


def flat_videos(per_conversation: Sequence[tuple[ModelVideo, ...]] | None) -> list[ModelVideo] | None:
    """The prepared videos of a batch's conversations as the backends take them (one list, in order)."""
    return None if per_conversation is None else [video for videos in per_conversation for video in videos]


@dataclass
class Predictor:
    """One model answering one task with fixed settings: batches of samples in, Predictions out."""

    backend: Backend
    spec: ModelSpec
    task: InferenceTask
    template: PromptTemplate
    vision: VisionSettings
    sampling: SamplingSettings
    media_root: Path
    """Folder relative video paths are resolved against (the manifest's)."""

    @classmethod
    def from_config(
        cls,
        config: PredictorConfig,
        media_root: Path,
        backend: Backend | None = None,
        task: InferenceTask | None = None,
    ) -> Predictor:
        """The predictor ``config`` describes; ``task`` replaces ``config.task`` (scorers choose their own)."""
        spec = resolve_model(config.model, config.arch)
        task = task or get_task(config.task)
        template = task.template(spec.arch, config.prompt)  # refuses a prompt unfit for the task: before loading
        vision = config.vision(spec)
        sampling = config.sampling(spec, task.reasoning)
        return cls(
            backend=backend or make_backend(config, spec),
            spec=spec,
            task=task,
            template=template,
            vision=vision,
            sampling=sampling,
            media_root=media_root,
        )

    def resolved(self) -> dict[str, Any]:
        """What the predictions depend on, for config.resolved.json."""
        return {
            "model": self.spec.model_dump(mode="json"),
            "prompt": self.template.id,
            "sampling": self.sampling.model_dump(mode="json"),
            "vision": self.vision.model_dump(mode="json"),
        }

    def conversations(self, batch: Sequence[VideoSample]) -> list[Conversation]:
        """The task's prompt for each sample, its video part carrying this predictor's vision settings."""
        return [
            self.task.conversation(self.template, sample, str(resolve_path(sample, self.media_root)), self.vision)
            for sample in batch
        ]

    def prepare_batch(self, items: Sequence[Item]) -> list[PreparedSample]:
        """Each item with its video parts decoded and resized for the model (the batch's videos on parallel
        threads); needs no model, so a job runs it apart from the model's worker."""
        samples = [sample_of(item) for item in items]
        videos = self._ready_videos(items, self.conversations(samples))
        return [PreparedSample(sample, ready) for sample, ready in zip(samples, videos, strict=True)]

    def prepare(self, item: Item) -> PreparedSample:
        """One item made ready for the model (the ``prepare`` step of the jobs that run this predictor)."""
        [prepared] = self.prepare_batch([item])
        return prepared

    def _ready_videos(
        self, items: Sequence[Item], conversations: Sequence[Conversation]
    ) -> list[tuple[ModelVideo, ...]]:
        """Per item, its prepared videos, or those of its conversation decoded now (all of a batch's at once)."""
        pairs = list(zip(items, conversations, strict=True))
        raw = [conversation for item, conversation in pairs if not isinstance(item, PreparedSample)]
        decoded = iter(model_videos(raw, self.vision.patch_factor))
        return [
            item.videos
            if isinstance(item, PreparedSample)
            else tuple(next(decoded) for _ in conversation.video_parts())
            for item, conversation in pairs
        ]

    def ask(
        self, items: Sequence[Item]
    ) -> tuple[list[VideoSample], list[Conversation], list[tuple[ModelVideo, ...]] | None]:
        """The samples, their conversations, and each conversation's prepared videos (None when no item was
        prepared: the backend then decodes them)."""
        samples = [sample_of(item) for item in items]
        conversations = self.conversations(samples)
        if not any(isinstance(item, PreparedSample) for item in items):
            return samples, conversations, None
        return samples, conversations, self._ready_videos(items, conversations)

    def __call__(self, batch: Sequence[Item]) -> list[Prediction]:
        samples, conversations, videos = self.ask(batch)
        return self.answer(samples, conversations, flat_videos(videos))

    def answer(
        self,
        batch: Sequence[VideoSample],
        conversations: Sequence[Conversation],
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[Prediction]:
        """One generation per conversation (``conversations[i]`` asks about ``batch[i]``), parsed."""
        started = time.perf_counter()
        generations = self.backend.generate(conversations, self.sampling, videos)
        latency = (time.perf_counter() - started) / len(batch)
        predictions = []
        for sample, generation in zip(batch, generations, strict=True):
            thinking, parsed = self.task.read_answer(generation.text)
            predictions.append(
                Prediction(
                    sample_id=sample.id,
                    model=self.spec.id,
                    task=f"{self.task.name}:{self.template.id}",
                    raw_text=generation.text,
                    thinking=thinking,
                    answer=parsed,
                    latency_s=latency,
                    num_generated_tokens=generation.num_generated_tokens,
                )
            )
        return predictions


@dataclass
class Unloaded:
    """A backend that is not loaded here: it lets a process describe a predictor (its prompt, sampling and
    frame settings) while the model is loaded elsewhere, e.g. by a job's workers. Using it is an error."""

    model_id: str

    def _refuse(self) -> RuntimeError:
        return RuntimeError(f"{self.model_id}: the model is not loaded in this process (it runs on the job's workers)")

    def generate(
        self,
        conversations: Sequence[Conversation],
        sampling: SamplingSettings,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[Generation]:
        raise self._refuse()

    def next_token_probabilities(
        self,
        conversations: Sequence[Conversation],
        candidates: Sequence[str],
        prefixes: Sequence[str] | None = None,
        videos: Sequence[ModelVideo] | None = None,
    ) -> list[CandidateProbabilities]:
        raise self._refuse()


@dataclass(frozen=True)
class PredictorFactory:
    """Builds the predictor of a run where its batches run (loading the model there): the ``factory`` of the
    inference job. ``backend``, when given, is used instead of loading one (it then travels with the factory)."""

    config: PredictorConfig
    media_root: Path
    backend: Backend | None = None

    def __call__(self) -> Predictor:
        return Predictor.from_config(self.config, self.media_root, self.backend)


class Prepares(Protocol):
    """What makes an item ready for the model without one: a described predictor or scorer."""

    def prepare(self, item: Item) -> Item: ...


@dataclass
class Preparer:
    """The CPU step (``prepare``) of the jobs that run a model: decodes an item's videos for it. ``describe``
    builds what prepares (a predictor or scorer with prompts and frame settings, no model) where the step runs,
    once per process; it pickles to Ray tasks as a ``functools.partial``."""

    describe: Callable[[], Prepares]
    _described: Prepares | None = field(default=None, init=False, repr=False, compare=False)

    def __call__(self, item: Item) -> Item:
        if self._described is None:
            self._described = self.describe()
        return self._described.prepare(item)


def run_inference(config: RunConfig, *, backend: Backend | None = None, progress: bool | None = None) -> JobReport:
    """Answer ``config.task`` for every sample not yet in ``config.out``; failures go to the errors file.

    The model is loaded where the batches run (``config.engine``), once there; ``backend`` replaces it.
    """
    samples = list(read_records(config.manifest, VideoSample))
    media_root = config.manifest.parent
    described = Predictor.from_config(config, media_root, backend or Unloaded(config.model))
    job: Job[Item, Prediction] = Job(
        stage="infer",
        factory=PredictorFactory(config, media_root, backend),
        prepare=Preparer(partial(Predictor.from_config, config, media_root, Unloaded(config.model)))
        if config.backend != "openai"
        else None,
        item_id=sample_id,
        out=config.out,
        record_type=Prediction,
        errors=config.errors_path(),
        batch_size=config.batch_size,
        workers=config.workers,
        gpu=config.backend != "openai",
    )
    resolved = {"run": config.model_dump(mode="json"), **described.resolved()}
    return run_job(job, samples, config=resolved, progress=progress, engine=config.engine)


def sample_id(item: Item) -> str:
    """The id of a sample, prepared or not (the item id of the jobs over manifests)."""
    return item.id
