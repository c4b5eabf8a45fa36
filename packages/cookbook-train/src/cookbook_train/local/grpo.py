"""Local GRPO: a small PyTorch loop, not TRL's ``GRPOTrainer``.

TRL 0.26's ``GRPOTrainer`` is image-only for vision-language models: it reads media from ``image``/``images``
columns, and its generation and log-probability passes forward ``pixel_values``/``image_grid_thw`` but none of the
video tensors (``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``), so a video conversation
would be trained without its video. Reaching into its private rollout methods would tie us to internals that
change between releases, so this module implements GRPO the way cosmos-rl does:

- per prompt, ``num_generations`` completions are sampled with ``model.generate`` from exactly the inputs
  inference builds (:func:`cookbook_infer.backends.transformers.model_inputs`: frames from the vision settings in
  the conversation, the same processor call), at the recipe's temperature;
- each completion is scored by the recipe's reward functions (the pure functions cosmos-rl calls), the total being
  their weighted sum; advantages are ``(r - mean) / (std + 1e-6)`` within the prompt's group;
- the loss is the clipped policy-gradient objective on the completion tokens only (log-probabilities from logits
  divided by the same temperature), plus ``kl_beta`` times the k3 estimate of the KL divergence to the initial
  model (the base weights with the LoRA adapters switched off, or a frozen copy), averaged over all completion
  tokens of the step (cosmos-rl's ``token-mean``); one optimizer step per batch of ``batch_size`` completions.
  Each batch is updated on once, right after it was sampled, so the importance ratio is 1 and the clip
  (``epsilon_low``/``epsilon_high``) never binds here; it does in cosmos-rl, whose rollouts may lag the policy.

Checkpoints (``checkpoints/step_N``: trainable weights, optimizer and schedule) are written every ``save_every``
steps and the run resumes from the newest one; the data order and the sampling seeds depend only on the seed and
the step, so a resumed run draws what the uninterrupted run would have.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookbook_data.schemas import Conversation
from cookbook_infer.backends.transformers import model_inputs
from cookbook_train.config import GRPOConfig
from cookbook_train.data import check_lengths, load_split, parse_conversation, reference_of, split_target
from cookbook_train.export import FINAL, save_hf
from cookbook_train.local._batch import sequence_lengths
from cookbook_train.local._model import (
    CHECKPOINTS,
    HF_SCHEDULES,
    METRICS,
    LocalResult,
    MetricsLog,
    TrainingModel,
    epoch_steps,
    is_peft,
    load_for_training,
    refuse_another_schedule,
    total_steps,
)
from cookbook_train.rewards import WeightedReward, reward_functions, reward_name, total_reward

STATE = "state.json"
ADVANTAGE_EPS = 1e-6


@dataclass
class _Group:
    """The completions of one prompt and what they earned."""

    inputs: Any
    """The prompt's model inputs (a batch of one), on the device."""
    completion_ids: Any
    """(G, C) generated tokens, padded after each completion's end."""
    completion_mask: Any
    """(G, C) 1 on each completion's tokens, its end-of-turn token included."""
    rewards: list[float]
    parts: list[dict[str, float]]
    advantages: Any
    """(G,) group-normalised rewards."""


def _eos_ids(training: TrainingModel) -> list[int]:
    configured = training.model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(training.processor.tokenizer.eos_token_id)
    return sorted(i for i in ids if i is not None)


def _vision_token_ids(training: TrainingModel) -> list[int]:
    """Placeholder tokens of images and videos: a completion must not contain them (the model would look for
    visual features that do not exist), so sampling suppresses them."""
    config = training.model.config
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return sorted({value for name in names if isinstance(value := getattr(config, name, None), int)})


def _completion_mask(ids: Any, eos_ids: Sequence[int]) -> Any:
    """1 up to and including the first end token of each row, 0 after it."""
    import torch

    is_end = torch.isin(ids, torch.tensor(list(eos_ids), device=ids.device))
    ended_before = (torch.cumsum(is_end.int(), dim=1) - is_end.int()) > 0
    return (~ended_before).long()


def _repeat(inputs: Any, count: int) -> dict[str, Any]:
    """The inputs of a one-prompt batch for ``count`` copies of the prompt (per-video tensors concatenated)."""
    import torch

    repeated: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in ("input_ids", "attention_mask"):
            repeated[key] = value.repeat(count, 1)
        elif isinstance(value, torch.Tensor):
            repeated[key] = torch.cat([value] * count, dim=0)
        elif isinstance(value, list):
            repeated[key] = value * count
        else:
            repeated[key] = value
    return repeated


def token_logprobs(model: Any, inputs: Any, completion_ids: Any, completion_mask: Any, temperature: float) -> Any:
    """(c, C) log-probabilities of the completion tokens after the prompt, from logits divided by ``temperature``."""
    import torch

    batch = _repeat(inputs, completion_ids.shape[0])
    input_ids = torch.cat([batch.pop("input_ids"), completion_ids], dim=1)
    attention_mask = torch.cat([batch.pop("attention_mask"), completion_mask], dim=1)
    width = completion_ids.shape[1]
    output = model(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=width + 1, **batch
    )
    logits = output.logits[:, :-1, :].float() / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


class _Reference:
    """Log-probabilities under the initial model: LoRA adapters switched off, or a frozen copy."""

    def __init__(self, config: GRPOConfig, training: TrainingModel) -> None:
        self.training = training
        self.copy: Any = None
        if not is_peft(training.model):
            from cookbook_infer.backends.transformers import load_pretrained

            # Frozen, so it needs no float32 master weights.
            self.copy = load_pretrained(config.model, device=training.device, dtype=training.compute_dtype).model
            self.copy.requires_grad_(False)

    def logprobs(self, inputs: Any, ids: Any, mask: Any, temperature: float) -> Any:
        import torch

        with torch.no_grad(), self.training.autocast():
            if self.copy is not None:
                return token_logprobs(self.copy, inputs, ids, mask, temperature)
            with self.training.model.disable_adapter():
                return token_logprobs(self.training.model, inputs, ids, mask, temperature)


class _Checkpoints:
    """``checkpoints/step_N`` folders: trainable weights, optimizer, schedule and the step."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = folder
        self.keep = keep

    def _steps(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.glob("step_*"):
            if (path / STATE).is_file() and path.name.removeprefix("step_").isdigit():
                found.append((int(path.name.removeprefix("step_")), path))
        return sorted(found)

    def save(self, step: int, total_steps: int, model: Any, optimizer: Any, scheduler: Any) -> Path:
        import torch

        path = self.folder / f"step_{step}"
        staging = self.folder / f".step_{step}.partial"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        trainable = {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}
        torch.save(trainable, staging / "trainable.pt")
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        (staging / STATE).write_text(json.dumps({"step": step, "total_steps": total_steps}) + "\n")
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
        for _, old in self._steps()[: -self.keep]:
            shutil.rmtree(old)
        return path

    def restore(
        self, total_steps: int, schedule: str, model: Any, optimizer: Any, scheduler: Any
    ) -> tuple[int, Path | None]:
        """Load the newest checkpoint of a run of ``total_steps`` on ``schedule``; returns its step and folder
        (0, None if there is none)."""
        import torch

        steps = self._steps()
        if not steps:
            return 0, None
        step, path = steps[-1]
        # A checkpoint from before the total was recorded cannot be checked.
        planned = json.loads((path / STATE).read_text()).get("total_steps", total_steps)
        refuse_another_schedule(path, planned, total_steps, schedule)
        trainable = torch.load(path / "trainable.pt", map_location="cpu")
        result = model.load_state_dict(trainable, strict=False)
        if result.unexpected_keys:
            raise ValueError(f"{path}: weights for parameters this model does not have: {result.unexpected_keys[:5]}")
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu"))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu"))
        return step, path


class GRPOLoop:
    """The local GRPO trainer for one recipe; :meth:`run` trains, checkpoints, resumes and exports."""

    def __init__(self, config: GRPOConfig, rewards: Sequence[WeightedReward] | None = None) -> None:
        self.config = config
        self.rewards = list(rewards) if rewards is not None else reward_functions(config)
        self.training = load_for_training(config)
        if config.gradient_checkpointing:
            self.training.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.rows = load_split(config.dataset, config.train_split)
        self.val_rows = load_split(config.dataset, config.val_split) if config.validate_every is not None else None
        self._check_lengths()
        self.eos_ids = _eos_ids(self.training)
        self.suppressed = _vision_token_ids(self.training)
        self.reference = _Reference(config, self.training) if config.kl_beta > 0 else None

    def _check_lengths(self) -> None:
        """Refuse, before the first step, prompts that leave less than ``max_response_length`` to ``max_length``,
        counted as the rollouts build them (a rollout that reached the limit would stop the run)."""
        training = self.training

        def count(prompt: Conversation) -> int:
            inputs = model_inputs(training.processor, training.model_type, [prompt])
            return sequence_lengths(inputs)[0] + self.config.max_response_length

        check_lengths(self.config, self.config.train_split, self.rows, training.processor, count)
        if self.val_rows is not None:
            check_lengths(self.config, self.config.val_split, self.val_rows, training.processor, count)

    @property
    def prompts_per_step(self) -> int:
        return self.config.batch_size // self.config.num_generations

    @property
    def steps_per_epoch(self) -> int:
        return epoch_steps(self.config, len(self.rows))

    @property
    def total_steps(self) -> int:
        return total_steps(self.config, self.steps_per_epoch)

    def _indices(self, step: int) -> list[int]:
        import numpy as np

        epoch, offset = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.rows))
        return [int(i) for i in order[offset * self.prompts_per_step : (offset + 1) * self.prompts_per_step]]

    def _prompt(self, row: dict[str, Any]) -> tuple[Conversation, str]:
        return split_target(parse_conversation(row["conversations"]))[0], reference_of(row)

    def _generate(self, conversations: Sequence[Conversation], *, count: int, sample: bool) -> tuple[Any, Any, Any]:
        """Inputs of the prompts and ``count`` completions of each: (inputs, ids (B*count, C), mask)."""
        import torch

        config, training = self.config, self.training
        inputs = model_inputs(training.processor, training.model_type, conversations).to(training.device)
        options: dict[str, Any] = {"max_new_tokens": config.max_response_length, "use_cache": True}
        options["suppress_tokens"] = self.suppressed
        if sample:
            options |= {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p}
            options |= {"top_k": config.top_k or 0, "num_return_sequences": count}
        else:
            options |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        training.model.eval()
        with torch.no_grad(), training.autocast():
            output = training.model.generate(**inputs, **options)
        ids = output[:, inputs["input_ids"].shape[1] :]
        return inputs, ids, _completion_mask(ids, self.eos_ids)

    def _texts(self, ids: Any, mask: Any) -> list[str]:
        rows = [row[: int(length)] for row, length in zip(ids.tolist(), mask.sum(dim=1).tolist(), strict=True)]
        texts: list[str] = self.training.processor.batch_decode(rows, skip_special_tokens=True)
        return texts

    def _score(
        self, texts: Sequence[str], reference: str, prompt: Conversation
    ) -> tuple[list[float], list[dict[str, float]]]:
        scored = [total_reward(self.rewards, text, reference, prompt=prompt.to_messages()) for text in texts]
        return [total for total, _ in scored], [parts for _, parts in scored]

    def _rollout(self, row: dict[str, Any]) -> _Group:
        import torch

        prompt, reference = self._prompt(row)
        inputs, ids, mask = self._generate([prompt], count=self.config.num_generations, sample=True)
        length = inputs["input_ids"].shape[1] + ids.shape[1]
        if length > self.config.max_length:
            raise ValueError(
                f"sample {row.get('id')!r}: prompt and completion take {length} tokens (video included), more than "
                f"max_length {self.config.max_length}; raise max_length or rebuild the dataset with fewer frames"
            )
        rewards, parts = self._score(self._texts(ids, mask), reference, prompt)
        values = torch.tensor(rewards, dtype=torch.float32)
        advantages = (values - values.mean()) / (values.std(unbiased=False) + ADVANTAGE_EPS)
        return _Group(inputs, ids, mask, rewards, parts, advantages.to(self.training.device))

    def _update(self, groups: Sequence[_Group]) -> dict[str, float]:
        """One optimizer step on the completions of ``groups``; returns the loss terms (token means)."""
        import torch

        config, model = self.config, self.training.model
        tokens = max(1, int(sum(int(group.completion_mask.sum()) for group in groups)))
        model.train()
        loss_sum, kl_sum = 0.0, 0.0
        for group in groups:
            for start in range(0, config.num_generations, config.mini_batch):
                part = slice(start, start + config.mini_batch)
                advantages = group.advantages[part]
                if config.kl_beta == 0 and not bool(advantages.abs().gt(0).any()):
                    continue
                ids, mask = group.completion_ids[part], group.completion_mask[part]
                with self.training.autocast():
                    logps = token_logprobs(model, group.inputs, ids, mask, config.temperature)
                ratio = torch.exp(logps - logps.detach())
                clipped = torch.clamp(ratio, 1 - config.epsilon_low, 1 + config.epsilon_high)
                gain = advantages.unsqueeze(1)
                per_token = -torch.min(ratio * gain, clipped * gain)
                if self.reference is not None:
                    reference = self.reference.logprobs(group.inputs, ids, mask, config.temperature)
                    delta = reference - logps
                    kl = torch.exp(delta) - delta - 1
                    per_token = per_token + config.kl_beta * kl
                    kl_sum += float((kl.detach() * mask).sum())
                loss = (per_token * mask).sum() / tokens
                loss.backward()
                loss_sum += float(loss.detach())
        return {"loss": loss_sum, **({"kl": kl_sum / tokens} if self.reference is not None else {})}

    def validate(self) -> float:
        """Mean total reward of greedy answers to the val split's prompts."""
        assert self.val_rows is not None
        totals: list[float] = []
        for start in range(0, len(self.val_rows), self.config.mini_batch):
            rows = [self.val_rows[i] for i in range(start, min(start + self.config.mini_batch, len(self.val_rows)))]
            prompts = [self._prompt(row) for row in rows]
            _, ids, mask = self._generate([prompt for prompt, _ in prompts], count=1, sample=False)
            for text, (prompt, reference) in zip(self._texts(ids, mask), prompts, strict=True):
                totals.append(self._score([text], reference, prompt)[0][0])
        return sum(totals) / max(1, len(totals))

    def run(self) -> LocalResult:
        import torch
        from transformers import get_scheduler

        config, model = self.config, self.training.model
        run = config.output_dir
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
        scheduler = get_scheduler(
            HF_SCHEDULES[config.lr_schedule],
            optimizer,
            num_warmup_steps=config.warmup_steps,
            num_training_steps=self.total_steps,
        )
        checkpoints = _Checkpoints(run / CHECKPOINTS, config.keep_checkpoints)
        start, resumed = (
            checkpoints.restore(self.total_steps, config.lr_schedule, model, optimizer, scheduler)
            if config.resume
            else (0, None)
        )
        log = MetricsLog(run / METRICS, start)
        names = [reward_name(fn) for fn, _ in self.rewards]
        for step in range(start, self.total_steps):
            torch.manual_seed(config.seed * 1_000_003 + step)
            groups = [self._rollout(self.rows[index]) for index in self._indices(step)]
            optimizer.zero_grad(set_to_none=True)
            terms = self._update(groups)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, config.grad_norm_clip))
            optimizer.step()
            scheduler.step()
            rewards = torch.tensor([r for group in groups for r in group.rewards])
            lengths = torch.cat([group.completion_mask.sum(dim=1) for group in groups]).float()
            line: dict[str, Any] = {
                "epoch": step / self.steps_per_epoch,
                "reward": float(rewards.mean()),
                "reward_std": float(rewards.std(unbiased=False)),
                **{f"reward/{name}": sum(p[name] for g in groups for p in g.parts) / len(rewards) for name in names},
                "completion_length": float(lengths.mean()),
                "grad_norm": grad_norm,
                "lr": float(scheduler.get_last_lr()[0]),
                **terms,
            }
            if self.val_rows is not None and config.validate_every and (step + 1) % config.validate_every == 0:
                line["val_reward"] = self.validate()
            if "val_reward" in line or (step + 1) % config.local.logging_steps == 0 or step + 1 == self.total_steps:
                log.write(step + 1, line)
            if (step + 1) % config.save_every == 0 or step + 1 == self.total_steps:
                checkpoints.save(step + 1, self.total_steps, model, optimizer, scheduler)
        final = save_hf(model, self.training.processor, run / FINAL, dtype=self.training.compute_dtype)
        return LocalResult(final=final, steps=self.total_steps, resumed_from=resumed, metrics=log.lines)


def train_grpo_local(config: GRPOConfig, rewards: Sequence[WeightedReward] | None = None) -> LocalResult:
    """Train with GRPO on one machine; ``rewards`` replaces the recipe's reward functions when given."""
    return GRPOLoop(config, rewards).run()
