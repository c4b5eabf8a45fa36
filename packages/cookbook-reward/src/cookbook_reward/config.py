"""Configurations of the reward stage: which scorer, with which model, over which data."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from cookbook_data.engines import EngineConfig, LocalEngineConfig
from cookbook_data.schemas import Strict
from cookbook_infer.access import BearerToken
from cookbook_infer.run import PredictorConfig

ScorerName = Literal["likert", "yesno", "critic", "adherence", "rule", "videophy2", "trajectory"]
"""The scorers ``cookbook-reward score --scorer`` takes:

- ``likert``: physical plausibility 1-5 (the VideoPhy-2 critic), with the expected score from token probabilities;
- ``yesno``: the Cosmos-Reason1-7B-Reward method, P("No" anomalies) from one forward pass;
- ``critic``: Approve/Reject with reasoning (score 1 approve, 0 reject);
- ``adherence``: VideoPhy-2 semantic adherence to the caption, 1-5, with the expected score;
- ``rule``: does the video follow the physical rule in ``metadata.rule`` (0 violated, 1 followed, 2 cannot tell);
- ``videophy2``: ``likert`` and ``adherence`` together, scored 1 when both are >= 4 (the VideoPhy-2 joint verdict);
- ``trajectory``: the kinematic verifier on the waypoint file in ``metadata.trajectory`` (no model needed).
"""

MODEL_FREE_SCORERS: frozenset[ScorerName] = frozenset({"trajectory"})


class ScorerConfig(PredictorConfig):
    """A scorer and the model behind it (model settings as in ``cookbook-infer run``)."""

    model: str | None = Field(  # type: ignore[assignment]
        default=None,
        description="Hub id or checkpoint folder of the judging model (trajectory: optional VLM verdict).",
    )
    scorer: ScorerName = Field(default="likert", description="Which scorer (see `cookbook-reward score --help`).")
    samples: int = Field(
        default=1, ge=1, description="Answers drawn per video (> 1 needs temperature > 0); scores are averaged."
    )
    reasoning: bool = Field(
        default=False, description="Ask for <think> reasoning before the answer (kept as the critique)."
    )
    joint_threshold: int = Field(
        default=4, ge=1, le=5, description="videophy2 scorer: both scores at least this count as a joint pass."
    )

    vlm_weight: float = Field(
        default=0.5, ge=0, le=1, description="trajectory scorer with a model: weight of the VLM verdict."
    )

    @property
    def local_model(self) -> bool:
        """Whether a model runs in this process (not none, nor one behind an OpenAI-compatible server): then
        videos are decoded here, and their decoding can be spread over processes."""
        return self.model is not None and self.backend != "openai"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if "task" in self.model_fields_set:
            raise ValueError("task: chosen by the scorer; set `scorer` instead")
        if self.model is None and self.scorer not in MODEL_FREE_SCORERS:
            raise ValueError(f"model: the {self.scorer} scorer needs a model (hub id or checkpoint folder)")
        if self.scorer == "yesno" or self.model is None:
            self._refuse_answer_settings(
                "it reads P(Yes/No) from one forward pass" if self.model is not None else "it has no model"
            )
        return self

    def _refuse_answer_settings(self, why: str) -> None:
        """Refuse the settings of drawn answers on a scorer that draws none: they would be recorded in the resolved
        config as if they had shaped the scores."""
        given = [
            name
            for name in ("samples", "reasoning")
            if name in self.model_fields_set and getattr(self, name) != type(self).model_fields[name].default
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)}: the {self.scorer} scorer draws no answers ({why}); "
                "they apply to the scorers that ask the model (likert, critic, adherence, rule, videophy2, "
                "trajectory with a model)"
            )


class ScoreConfig(ScorerConfig):
    """Everything ``cookbook-reward score`` depends on; written as config.resolved.json beside the output."""

    manifest: Path = Field(description="VideoSample JSONL manifest (or predictions' manifest) to score.")
    out: Path = Field(description="ScoreRecord JSONL (appended to; reruns skip ids already there).")
    errors: Path | None = Field(default=None, description="Per-item errors (default: <out>.errors.jsonl).")
    batch_size: int = Field(default=8, ge=1, description="Videos per model call.")
    workers: int = Field(default=1, ge=1, description="Batches prepared and run concurrently (local engine).")
    engine: EngineConfig = Field(
        default_factory=LocalEngineConfig, description="Where the batches run: local, or a Ray cluster."
    )

    def errors_path(self) -> Path:
        return self.errors or self.out.with_name(self.out.stem + ".errors.jsonl")


class FilterConfig(Strict):
    """Curation of generated videos by their scores: keep the good, drop the bad, set the rest aside."""

    manifest: Path = Field(description="VideoSample JSONL manifest of the generated videos.")
    scores: Path = Field(description="ScoreRecord JSONL from `cookbook-reward score`.")
    out: Path = Field(description="Folder for kept, surplus, borderline, rejected and unscored .jsonl manifests.")
    by: Literal["score", "expected_score"] = Field(
        default="score", description="Which number decides: the parsed score or the expected score."
    )
    keep_min: float | None = Field(
        default=None,
        description="Videos scoring at least this are kept (default 4 for Likert scores; other kinds need it).",
    )
    drop_max: float | None = Field(
        default=None,
        description="Videos scoring at most this are rejected (default 2 for Likert scores; other kinds need it).",
    )
    best_of: str | None = Field(
        default=None,
        description="Metadata key grouping N generations of one prompt: keep only the best kept video per group.",
    )

    @model_validator(mode="after")
    def _bands_do_not_overlap(self) -> Self:
        if self.drop_max is not None and self.keep_min is not None and self.drop_max >= self.keep_min:
            raise ValueError(f"drop_max ({self.drop_max}) must be below keep_min ({self.keep_min})")
        return self


_MiB = 1024 * 1024


class RewardServiceSettings(Strict):
    """Settings of the reward service (the scorer and its model are configured separately)."""

    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0 for all).")
    port: int = Field(default=8100, ge=0, le=65535, description="TCP port (0 picks a free one).")
    max_batch_size: int = Field(default=8, gt=0, description="Most items scored in one model call.")
    max_wait_ms: float = Field(default=10.0, ge=0, description="Longest wait for other items to join a batch.")
    max_queue: int = Field(default=64, gt=0, description="Most items waiting; requests beyond it get 429.")
    prepare_workers: int | None = Field(
        default=None, gt=0, description="Videos decoded at once as requests arrive (default: one per usable CPU)."
    )
    request_timeout_s: float = Field(default=300.0, gt=0, description="A request taking longer gets 504.")
    media_roots: list[Path] = Field(default_factory=list, description="Folders whose videos requests may name.")
    max_upload_bytes: int = Field(default=64 * _MiB, gt=0, description="Largest uploaded video (decoded bytes).")
    max_request_bytes: int = Field(default=256 * _MiB, gt=0, description="Largest request body; larger gets 413.")
    token: BearerToken | None = Field(default=None, description="Bearer token the scoring endpoints require.")
    failure_reward: float = Field(default=0.0, description="/get_reward's reward for an item that failed.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(default="info")


class ReplicaSettings(Strict):
    """The reward service as replicas on a Ray cluster (Ray Serve); each replica loads its own scorer."""

    replicas: int | None = Field(default=None, ge=1, description="A fixed number of replicas.")
    min_replicas: int | None = Field(default=None, ge=0, description="Autoscaling: fewest replicas kept.")
    max_replicas: int | None = Field(default=None, ge=1, description="Autoscaling: most replicas started.")
    address: str | None = Field(
        default=None,
        description="Cluster to join: auto, ray://HOST:10001 or HOST:PORT (unset: $RAY_ADDRESS, else a new one).",
    )
    gpus_per_replica: float | None = Field(
        default=None,
        ge=0,
        description="GPUs each replica reserves. Default: 1 when the cluster has GPUs and the model runs in the "
        "replica, else 0 (no model, or one behind an OpenAI-compatible server).",
    )
    cpus_per_replica: float = Field(default=1.0, ge=0, description="CPUs each replica reserves.")

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> Self:
        autoscaling = self.min_replicas is not None or self.max_replicas is not None
        if self.replicas is not None and autoscaling:
            raise ValueError("replicas: give a fixed number, or min_replicas/max_replicas to autoscale, not both")
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})")
        return self


class ServeConfig(Strict):
    """``cookbook-reward serve``: the scorer (and its model) and the service around it."""

    scorer: ScorerConfig = Field(description="Which scorer answers, with which model.")
    service: RewardServiceSettings = Field(default_factory=RewardServiceSettings, description="HTTP service settings.")
    ray: ReplicaSettings | None = Field(
        default=None, description="Serve replicas on a Ray cluster (Ray Serve) instead of this one process."
    )
