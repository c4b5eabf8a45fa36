"""Training recipes: one strict config for SFT and one for GRPO, read by both backends.

A recipe names the model, the dataset folder written by ``cookbook-data build-sft`` / ``build-rl`` and the run
folder, plus the optimisation settings both backends share. The cosmos-rl backend renders it into a complete
cosmos-rl TOML (:mod:`cookbook_train.render`); the local backend trains with it directly. Backend-specific
settings live in the ``[cosmos]`` and ``[local]`` tables. Unknown keys are errors that name the key.

This module stays light (pydantic only): the command line imports it to print ``--help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, JsonValue, model_validator

from cookbook_data.schemas import Strict
from cookbook_infer.registry import Arch, resolve_model

Backend = Literal["cosmos-rl", "local"]
Kind = Literal["sft", "grpo"]
RewardName = Literal["format", "score_accuracy", "choice_accuracy", "trajectory"]
LrSchedule = Literal["constant", "linear", "cosine"]
Logger = Literal["console", "wandb"]
Positive = Annotated[int, Field(gt=0)]

MODEL_TYPES: dict[Arch, str] = {"reason1": "qwen2_5_vl", "reason2": "qwen3_vl"}
"""``config.model_type`` of each architecture."""

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""The language model's attention and MLP projections (a name matches every module ending in it)."""


class RewardTerm(Strict):
    """One GRPO reward function and its weight in the total reward."""

    name: RewardName = Field(
        description=(
            "format (<think>..</think>\\n\\n<answer>..</answer>), score_accuracy (1 exact, 0.5 one off, else 0), "
            "choice_accuracy (option letter) or trajectory (comfort checks of waypoints)."
        )
    )
    weight: float = Field(default=1.0, description="Multiplier of this reward in the weighted sum.")


class LoraSettings(Strict):
    """Low-rank adapters instead of full fine-tuning; the export merges them into plain weights."""

    rank: Positive = Field(default=16, description="Rank r of each adapter.")
    alpha: Positive = Field(default=32, description="Scaling numerator: updates are scaled by alpha / rank.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        description=(
            "Module names that get adapters (a name matches every module ending in it; in Reason1 the vision "
            "MLP shares the MLP names), or all-linear."
        ),
    )


class Parallelism(Strict):
    """How one kind of cosmos-rl replica is laid out on GPUs; every key is written to the cosmos-rl TOML."""

    replicas: Positive = Field(default=1, description="Replicas started (cosmos-rl n_init_replicas).")
    tp: Positive = Field(default=1, description="Tensor-parallel size (cosmos-rl's own default is 2).")
    dp_shard: Positive = Field(default=1, description="Data-parallel shards (FSDP) per replica.")
    dp_replicate: Positive = Field(default=1, description="Data-parallel replication per replica (SFT only).")
    cp: Positive = Field(default=1, description="Context-parallel size.")
    pp: Positive = Field(default=1, description="Pipeline-parallel size.")

    def gpus(self) -> int:
        """GPUs all replicas of this kind take together."""
        return self.replicas * self.tp * self.dp_shard * self.dp_replicate * self.cp * self.pp

    def data_parallel(self) -> int:
        """Data-parallel ranks of one replica (dp_shard x dp_replicate): each reads its own share of a batch."""
        return self.dp_shard * self.dp_replicate


class CosmosSettings(Strict):
    """Settings only the cosmos-rl backend reads."""

    policy: Parallelism = Field(default_factory=Parallelism, description="Layout of the policy (trainer).")
    rollout: Parallelism = Field(default_factory=Parallelism, description="Layout of the rollout engine (GRPO).")
    rollout_backend: str = Field(
        default="vllm",
        min_length=1,
        description="Rollout engine: vllm, vllm_async, trtllm or a name registered with cosmos-rl (GRPO).",
    )
    rollout_batch_size: Positive = Field(default=4, description="Prompts per rollout engine call (GRPO).")
    gpu_memory_utilization: float = Field(
        default=0.7, gt=0, le=1, description="Share of a rollout GPU the engine may take (GRPO)."
    )
    param_dtype: Literal["bfloat16", "float32"] = Field(
        default="bfloat16", description="Dtype of forward and backward passes (master weights stay float32)."
    )
    loggers: list[Logger] = Field(
        default_factory=lambda: list[Logger](["console"]), description="Where cosmos-rl reports metrics."
    )
    project: str = Field(default="cookbook", min_length=1, description="Project name for the loggers.")
    extra: dict[str, JsonValue] = Field(
        default_factory=dict,
        description=(
            "cosmos-rl keys set after rendering, dotted (e.g. 'train.optm_warmup_start_factor' = 0.1); a table "
            "sets its keys one by one, keeping the others of the rendered table; each key must be one cosmos-rl "
            "knows."
        ),
    )


class LocalSettings(Strict):
    """Settings only the single-machine backend reads."""

    device: str = Field(default="auto", description="cpu, cuda, cuda:1 ... (auto: cuda when available).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description=(
            "Compute dtype (auto: bfloat16 on a GPU that supports it, else float32); full fine-tuning keeps float32 "
            "weights and computes in bfloat16 through autocast, LoRA loads its frozen base in it."
        ),
    )
    logging_steps: Positive = Field(default=1, description="Optimizer steps between metric lines.")


class TrainConfig(Strict):
    """What both SFT and GRPO recipes hold."""

    kind: Kind = Field(description="sft or grpo; must match the command (cookbook-train sft|grpo).")
    backend: Backend = Field(
        default="cosmos-rl", description="cosmos-rl (multi-GPU) or local (one machine, CPU or one GPU)."
    )
    model: str = Field(min_length=1, description="Hub id (e.g. nvidia/Cosmos-Reason1-7B) or checkpoint folder.")
    arch: Arch | None = Field(
        default=None, description="reason1 (Qwen2.5-VL) or reason2 (Qwen3-VL); None: known ids and folders tell."
    )
    dataset: Path = Field(description="Folder written by cookbook-data build-sft (SFT) or build-rl (GRPO).")
    output_dir: Path = Field(description="Run folder: rendered config, checkpoints, metrics and the final export.")
    train_split: str = Field(default="train", min_length=1, description="Dataset split trained on.")
    val_split: str = Field(default="val", min_length=1, description="Dataset split used for validation.")
    validate_every: Positive | None = Field(
        default=None, description="Optimizer steps between validations; None: no validation."
    )
    epochs: Positive = Field(default=1, description="Passes over the train split.")
    max_steps: Positive | None = Field(
        default=None, description="Stop after this many optimizer steps, if the epochs have not ended before."
    )
    lr: float = Field(gt=0, description="Peak learning rate.")
    lr_schedule: LrSchedule = Field(default="cosine", description="constant, linear or cosine decay after warmup.")
    warmup_steps: int = Field(default=0, ge=0, description="Optimizer steps of linear warmup.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    grad_norm_clip: float = Field(default=1.0, gt=0, description="Gradient norm clipping.")
    batch_size: Positive = Field(
        default=8,
        description=(
            "Samples per optimizer step per policy replica, shared among its data-parallel ranks (GRPO: "
            "completions, not prompts)."
        ),
    )
    mini_batch: Positive = Field(default=1, description="Samples per forward pass; gradients accumulate over them.")
    max_length: Positive = Field(
        default=4096, description="Longest sequence in tokens, video tokens included (cosmos-rl model_max_length)."
    )
    gradient_checkpointing: bool = Field(default=True, description="Recompute activations to save memory.")
    seed: int = Field(default=0, ge=0, description="Seed of data order, sampling and initialisation.")
    save_every: Positive = Field(default=100, description="Optimizer steps between checkpoints.")
    keep_checkpoints: Positive = Field(default=3, description="Most recent checkpoints kept.")
    resume: bool = Field(default=True, description="Continue from the last checkpoint in the run folder, if any.")
    lora: LoraSettings | None = Field(default=None, description="LoRA adapters; None: full fine-tuning.")
    cosmos: CosmosSettings = Field(default_factory=CosmosSettings, description="cosmos-rl backend settings.")
    local: LocalSettings = Field(default_factory=LocalSettings, description="Local backend settings.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.batch_size % self.mini_batch:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of mini_batch ({self.mini_batch})")
        return self

    @model_validator(mode="after")
    def _check_ranks(self) -> Self:
        """cosmos-rl shares a policy replica's batch among its data-parallel ranks, each in whole mini-batches:
        the render divides ``batch_size`` among them for SFT (whose ``train_batch_per_replica`` is read on every
        rank), and GRPO's policy workers refuse at start-up a ``train_batch_per_replica`` that is not a multiple
        of dp_shard x dp_replicate x mini_batch (cosmos_rl/policy/worker/base.py)."""
        ranks = self.cosmos.policy.data_parallel()
        if self.backend == "cosmos-rl" and self.batch_size % (ranks * self.mini_batch):
            raise ValueError(
                f"batch_size ({self.batch_size}) is shared among the {ranks} data-parallel ranks of a cosmos-rl "
                f"policy replica (dp_shard x dp_replicate), each in whole mini_batches ({self.mini_batch}): it must "
                f"be a multiple of {ranks * self.mini_batch}"
            )
        return self

    def resolved_arch(self) -> Arch:
        """The architecture: given, or known from the hub id or the checkpoint folder's config.json."""
        return resolve_model(self.model, self.arch).arch

    def model_type(self) -> str:
        """``config.model_type`` of the model (qwen2_5_vl or qwen3_vl)."""
        return MODEL_TYPES[self.resolved_arch()]

    def with_absolute_paths(self) -> Self:
        """A copy whose dataset, run folder and (local) model folder are absolute, for processes started
        elsewhere."""
        model = Path(self.model).expanduser()
        update: dict[str, Path | str] = {
            "dataset": self.dataset.expanduser().absolute(),
            "output_dir": self.output_dir.expanduser().absolute(),
        }
        if model.exists():
            update["model"] = str(model.absolute())
        return self.model_copy(update=update)


class SFTConfig(TrainConfig):
    """Supervised fine-tuning on the assistant turns of a build-sft dataset."""

    kind: Literal["sft"] = Field(default="sft", description="sft; must match the command.")

    @model_validator(mode="after")
    def _check_device(self) -> Self:
        """Local SFT runs on transformers' Trainer (TRL's trainer is one), which trains on the first visible GPU,
        ``cuda:0``, and moves the model there whatever device it was loaded on: another index would be ignored
        without a word. Local GRPO, our own loop, honours any device."""
        device = self.local.device
        if self.backend == "local" and device.startswith("cuda:") and device != "cuda:0":
            raise ValueError(
                f"local.device {device!r}: local SFT trains on the first visible GPU (transformers' Trainer moves "
                f"the model to cuda:0); choose the GPU with CUDA_VISIBLE_DEVICES={device.removeprefix('cuda:')} "
                "and device 'cuda'"
            )
        return self


class GRPOConfig(TrainConfig):
    """GRPO on the prompts of a build-rl dataset, rewarded by the reward functions of cookbook-reward."""

    kind: Literal["grpo"] = Field(default="grpo", description="grpo; must match the command.")
    rewards: list[RewardTerm] = Field(min_length=1, description="Reward functions; the total is the weighted sum.")
    num_generations: int = Field(default=8, ge=2, description="Completions sampled per prompt (the group size).")
    kl_beta: float = Field(default=0.0, ge=0, description="Weight of the KL penalty to the initial model.")
    temperature: float = Field(
        default=1.0, gt=0, description="Sampling temperature, the same for the rollout engine and the trainer."
    )
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling of rollouts.")
    top_k: Positive | None = Field(default=None, description="Top-k sampling of rollouts; None: no limit.")
    max_response_length: Positive = Field(default=1024, description="Most tokens generated per completion.")
    epsilon_low: float = Field(default=0.2, ge=0, description="Lower clip of the importance ratio (1 - eps).")
    epsilon_high: float = Field(default=0.2, ge=0, description="Upper clip of the importance ratio (1 + eps).")

    @model_validator(mode="after")
    def _check_group(self) -> Self:
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"batch_size ({self.batch_size}) counts completions and must be a multiple of num_generations "
                f"({self.num_generations})"
            )
        return self


RUN_CONFIGS: dict[Kind, type[TrainConfig]] = {"sft": SFTConfig, "grpo": GRPOConfig}
"""The config class of each command."""


def load_run_config(data: dict[str, JsonValue]) -> SFTConfig | GRPOConfig:
    """A config from its JSON form, the class chosen by its ``kind``."""
    kind = data.get("kind")
    if kind == "sft":
        return SFTConfig.model_validate(data)
    if kind == "grpo":
        return GRPOConfig.model_validate(data)
    raise ValueError(f"kind: expected 'sft' or 'grpo', got {kind!r}")
