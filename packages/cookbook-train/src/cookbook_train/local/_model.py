"""Loading a checkpoint for training: the inference loader, then train mode, LoRA and gradient checkpointing."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cookbook_data.records import JsonlWriter, read_records, write_records
from cookbook_data.schemas import Strict
from cookbook_infer.backends.transformers import load_pretrained, resolve_device
from cookbook_train.config import GRPOConfig, TrainConfig

METRICS = "metrics.jsonl"
"""One :class:`StepMetrics` record per logged step, in the run folder."""
CHECKPOINTS = "checkpoints"
"""Folder of the resumable checkpoints, in the run folder."""
HF_SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}
"""transformers' name of each learning-rate schedule (all with linear warmup)."""


def resolve_dtype(name: str, device: str) -> Literal["float32", "bfloat16"]:
    """``auto`` -> bfloat16 on a GPU that supports it, else float32 (CPU training in bfloat16 is slow and lossy)."""
    import torch

    if name == "auto":
        return "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if name == "bfloat16" else "float32"


@dataclass
class TrainingModel:
    """A model ready to train, its processor and where it runs."""

    model: Any
    processor: Any
    model_type: str
    device: str
    dtype: Literal["float32", "bfloat16"]
    """The weights' dtype."""
    compute_dtype: Literal["float32", "bfloat16"]
    """The dtype of forward and backward passes: bfloat16 over float32 weights is mixed precision."""

    def autocast(self) -> AbstractContextManager[Any]:
        """Runs the enclosed passes in ``compute_dtype`` when the weights are float32 master weights for it."""
        import torch

        mixed = self.dtype != self.compute_dtype
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=mixed)


def load_for_training(config: TrainConfig) -> TrainingModel:
    """The recipe's model in train mode on the chosen device, with LoRA adapters when the recipe asks for them.

    Full fine-tuning keeps float32 weights even when it computes in bfloat16: AdamW's updates of a few 1e-6 are
    below bfloat16's resolution (8 bits of mantissa) for most weights and would round away. LoRA trains float32
    adapters (peft's default), so its frozen base stays in the compute dtype.
    """
    device = resolve_device(config.local.device)
    compute = resolve_dtype(config.local.dtype, device)
    dtype = compute if config.lora is not None else "float32"
    loaded = load_pretrained(config.model, device=device, dtype=dtype)
    model = loaded.model
    expected = config.model_type()
    if model.config.model_type != expected:
        raise ValueError(f"{config.model}: a {model.config.model_type} checkpoint, expected {expected}")
    model.config.use_cache = False
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora.rank,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
        )
        model = get_peft_model(model, lora)
    model.train()
    return TrainingModel(model, loaded.processor, expected, device, dtype, compute)


def epoch_steps(config: TrainConfig, rows: int) -> int:
    """Optimizer steps of one pass over ``rows`` training rows: ``batch_size`` rows a step for SFT, and for GRPO
    ``batch_size / num_generations`` prompts (each sampled ``num_generations`` times)."""
    per_step = config.batch_size // config.num_generations if isinstance(config, GRPOConfig) else config.batch_size
    return math.ceil(rows / per_step)


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of a run: ``epochs`` passes, cut short by ``max_steps`` but never extended by it, as
    cosmos-rl counts them (min(steps of the epochs, max_num_steps)); the learning-rate schedule spans them."""
    by_epochs = config.epochs * steps_per_epoch
    return by_epochs if config.max_steps is None else min(config.max_steps, by_epochs)


STEPS_CHANGED = "epochs, max_steps, batch_size, num_generations or the train split changed"
"""What changes a run's step count, for the refusals of a resume that plans another."""
KEEP_OR_START_AFRESH = "keep those settings, or start a new run (a new output_dir) whose model is this run's export"


def refuse_another_schedule(checkpoint: Path, planned: int, steps: int, schedule: str) -> None:
    """Refuse to resume ``checkpoint``, trained for ``planned`` steps, for a run of ``steps`` (``epochs``,
    ``max_steps``, ``batch_size`` or the train split changed) whose learning-rate ``schedule`` decays over them.

    A linear or cosine schedule cannot stretch on resume: the optimizer comes back at the checkpoint's learning rate
    (0 when the earlier run had decayed to its end), and the rebuilt schedule then jumps to the new one's value at
    that step, so the run would follow neither schedule. A constant one does not depend on the total and may go on.
    """
    if planned != steps and schedule != "constant":
        raise ValueError(
            f"{checkpoint}: trained for {planned} steps, and this run plans {steps} ({STEPS_CHANGED}); a resumed run "
            f"cannot stretch a {schedule} learning-rate schedule: {KEEP_OR_START_AFRESH}"
        )


def is_peft(model: Any) -> bool:
    """Whether ``model`` carries peft adapters."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


@dataclass
class LocalResult:
    """What a local training run left behind."""

    final: Path
    """The exported Hugging Face checkpoint (LoRA merged)."""
    steps: int
    """Optimizer steps done, counting those of a resumed run."""
    resumed_from: Path | None = None
    """The checkpoint the run continued from."""
    metrics: list[StepMetrics] = field(default_factory=list)
    """The metric lines this run wrote (also appended to metrics.jsonl)."""


class StepMetrics(Strict):
    """One logged step of a local run: a line of ``metrics.jsonl``."""

    step: int = Field(ge=0, description="Optimizer steps done when the line was logged.")
    values: dict[str, float] = Field(description="Metric name -> value: loss, reward, grad_norm, lr, ...")


class MetricsLog:
    """Appends each logged step to ``metrics.jsonl`` through the record writer (a resumed run appends after a
    line torn by a crash, not onto it) and keeps this run's lines.

    A run that starts at step ``start`` (the step of the checkpoint it resumes, else 0) first drops the lines of
    later steps: an earlier run logged them after its last checkpoint, and this run trains those steps again and
    logs them anew, so the file never holds two runs' lines for one step.
    """

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.lines: list[StepMetrics] = []
        if path.exists():
            kept = [line for line in read_records(path, StepMetrics) if line.step <= start]
            write_records(path, StepMetrics, kept)

    def write(self, step: int, values: dict[str, Any]) -> None:
        line = StepMetrics(step=step, values=values)
        with JsonlWriter(self.path, StepMetrics) as writer:
            writer.write(line)
        self.lines.append(line)
