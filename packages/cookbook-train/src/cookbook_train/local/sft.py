"""Local SFT with TRL's ``SFTTrainer``.

TRL 0.26 prepares vision datasets only for images (``image``/``images`` columns), so the trainer gets the built
dataset untouched (``skip_prepare_dataset``, every column kept) and our collator
(:class:`cookbook_train.local._batch.SFTCollator`), which samples the video frames from the vision settings of each
conversation and builds the inputs with the same processor call as inference; the labels cover only the
assistant turn. Everything else is TRL's and transformers': optimiser, schedule, gradient accumulation, logging,
checkpoints and ``resume_from_checkpoint`` (used when the run folder holds a checkpoint and ``resume`` is on),
except how a full fine-tune's weights come back from a checkpoint (:func:`load_checkpoint_weights`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cookbook_data.schemas import Conversation
from cookbook_train.config import SFTConfig
from cookbook_train.data import check_lengths, load_split
from cookbook_train.export import FINAL, save_hf
from cookbook_train.local._batch import SFTCollator, sequence_lengths, sft_batch
from cookbook_train.local._model import (
    CHECKPOINTS,
    HF_SCHEDULES,
    METRICS,
    LocalResult,
    MetricsLog,
    epoch_steps,
    is_peft,
    load_for_training,
    refuse_another_schedule,
    total_steps,
)


def _metrics_callback(log: MetricsLog) -> Any:
    from transformers import TrainerCallback

    class WriteMetrics(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if logs:
                log.write(state.global_step, logs)

    return WriteMetrics()


def load_checkpoint_weights(model: Any, checkpoint: Path) -> None:
    """Copy the weights a full fine-tune saved in ``checkpoint`` into ``model``; any weight missing, left over or
    of another shape is an error.

    transformers (4.57) saves Qwen2.5-VL under its legacy weight names (``model.layers.*``, ``visual.*``) and
    renames them back only in ``from_pretrained``. The trainer's own resume loads the file as it is, with
    ``strict=False``: no weight of a Reason1 checkpoint matches, it only warns, and the run would go on from the
    base weights with the checkpoint's optimizer state. ``from_pretrained`` applies the renaming, at the cost of a
    second copy of the weights in CPU memory while they are copied over.
    """
    from transformers import AutoModelForImageTextToText

    loaded: Any = AutoModelForImageTextToText.from_pretrained(
        str(checkpoint), dtype=model.dtype, output_loading_info=True
    )
    saved, info = loaded
    problems = [f"{len(keys)} {kind} (e.g. {list(keys)[:3]})" for kind, keys in info.items() if keys]
    if problems:
        raise ValueError(f"{checkpoint}: the checkpoint's weights do not fit the model trained: {', '.join(problems)}")
    model.load_state_dict(saved.state_dict(), strict=True)


def _trainer_class() -> Any:
    from trl.trainer.sft_trainer import SFTTrainer

    class CheckpointSFTTrainer(SFTTrainer):
        """TRL's trainer, resuming a full fine-tune with :func:`load_checkpoint_weights` (adapters resume as
        peft saved them, under names the trainer's own loading matches)."""

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            if is_peft(self.model):
                super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[no-untyped-call]
            else:
                load_checkpoint_weights(self.model if model is None else model, Path(resume_from_checkpoint))

    return CheckpointSFTTrainer


def last_checkpoint(folder: Path) -> tuple[int, Path] | None:
    """The step N and the folder of the ``checkpoint-N`` with the highest N that the trainer wrote into
    ``folder``, if any."""
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in folder.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / "trainer_state.json").is_file()
    ]
    return max(found) if found else None


def _one_visible_gpu(device: str) -> None:
    """Refuse a GPU run that sees several GPUs: transformers' Trainer then wraps the model in DataParallel over all
    of them and multiplies the per-device batch by their count, so the run would train on other batches than the
    recipe says (and than cosmos-rl trains)."""
    import torch

    if device.startswith("cuda") and (count := torch.cuda.device_count()) > 1:
        raise ValueError(
            f"local SFT sees {count} GPUs: transformers' Trainer would spread each step over all of them and "
            f"multiply batch_size by {count}; make one visible (CUDA_VISIBLE_DEVICES=0), or train on several "
            'with backend = "cosmos-rl"'
        )


def _check_lengths(config: SFTConfig, processor: Any, model_type: str, train: Any, evaluation: Any) -> None:
    """Refuse over-long rows before the first step, counted as the collator builds them (the collator would stop
    the run at the first one)."""

    def count(conversation: Conversation) -> int:
        return sequence_lengths(sft_batch(processor, model_type, [conversation]))[0]

    check_lengths(config, config.train_split, train, processor, count)
    if evaluation is not None:
        check_lengths(config, config.val_split, evaluation, processor, count)


def train_sft_local(config: SFTConfig) -> LocalResult:
    """Fine-tune on the train split, resume from the run folder's last checkpoint, export the final model."""
    from trl.trainer.sft_config import SFTConfig as TrlSFTConfig

    from cookbook_infer.backends.transformers import resolve_device

    _one_visible_gpu(resolve_device(config.local.device))
    run = config.output_dir
    checkpoints = run / CHECKPOINTS
    loaded = load_for_training(config)
    train = load_split(config.dataset, config.train_split)
    evaluation = load_split(config.dataset, config.val_split) if config.validate_every is not None else None
    _check_lengths(config, loaded.processor, loaded.model_type, train, evaluation)
    args = TrlSFTConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.mini_batch,
        per_device_eval_batch_size=config.mini_batch,
        gradient_accumulation_steps=config.batch_size // config.mini_batch,
        learning_rate=config.lr,
        lr_scheduler_type=HF_SCHEDULES[config.lr_schedule],
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.grad_norm_clip,
        max_steps=total_steps(config, epoch_steps(config, len(train))),
        logging_steps=config.local.logging_steps,
        save_strategy="steps",
        save_steps=config.save_every,
        save_total_limit=config.keep_checkpoints,
        eval_strategy="steps" if evaluation is not None else "no",
        eval_steps=config.validate_every,
        seed=config.seed,
        data_seed=config.seed,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=loaded.compute_dtype == "bfloat16",  # over float32 weights for full fine-tuning: mixed precision
        use_cpu=loaded.device == "cpu",
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    start, last = (last_checkpoint(checkpoints) if config.resume else None) or (0, None)
    if last is not None:
        planned = json.loads((last / "trainer_state.json").read_text())["max_steps"]
        refuse_another_schedule(last, planned, args.max_steps, config.lr_schedule)
    log = MetricsLog(run / METRICS, start)
    trainer = _trainer_class()(
        model=loaded.model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=loaded.processor,
        data_collator=SFTCollator(loaded.processor, loaded.model_type, config.max_length),
        callbacks=[_metrics_callback(log)],
    )
    trainer.train(resume_from_checkpoint=None if last is None else str(last))
    final = save_hf(trainer.model, loaded.processor, run / FINAL, dtype=loaded.compute_dtype)
    return LocalResult(
        final=final,
        steps=trainer.state.global_step,
        resumed_from=last,
        metrics=log.lines,
    )
