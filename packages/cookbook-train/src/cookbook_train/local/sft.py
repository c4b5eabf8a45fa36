"""Local SFT with TRL's ``SFTTrainer``.

TRL 0.26 prepares vision datasets only for images (``image``/``images`` columns), so the trainer gets the built
dataset untouched (``skip_prepare_dataset``, every column kept) and our collator
(:class:`cookbook_train.local._batch.SFTCollator`), which samples the video frames from the vision settings of each
conversation and builds the inputs with the same processor call as inference; the labels cover only the
assistant turn. Everything else is TRL's and transformers': optimiser, schedule, gradient accumulation, logging,
checkpoints and ``resume_from_checkpoint`` (used when the run folder holds a checkpoint and ``resume`` is on).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cookbook_train.config import SFTConfig
from cookbook_train.data import load_split
from cookbook_train.export import FINAL, save_hf
from cookbook_train.local._batch import SFTCollator
from cookbook_train.local._model import (
    CHECKPOINTS,
    HF_SCHEDULES,
    METRICS,
    LocalResult,
    MetricsLog,
    load_for_training,
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


def last_checkpoint(folder: Path) -> Path | None:
    """The ``checkpoint-N`` folder with the highest N that the trainer wrote into ``folder``, if any."""
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in folder.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / "trainer_state.json").is_file()
    ]
    return max(found)[1] if found else None


def train_sft_local(config: SFTConfig) -> LocalResult:
    """Fine-tune on the train split, resume from the run folder's last checkpoint, export the final model."""
    from trl.trainer.sft_config import SFTConfig as TrlSFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    run = config.output_dir
    checkpoints = run / CHECKPOINTS
    loaded = load_for_training(config)
    train = load_split(config.dataset, config.train_split)
    evaluation = load_split(config.dataset, config.val_split) if config.validate_every is not None else None
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
        max_steps=total_steps(config, math.ceil(len(train) / config.batch_size)),
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
    log = MetricsLog(run / METRICS)
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=loaded.processor,
        data_collator=SFTCollator(loaded.processor, loaded.model_type, config.max_length),
        callbacks=[_metrics_callback(log)],
    )
    last = last_checkpoint(checkpoints) if config.resume else None
    trainer.train(resume_from_checkpoint=None if last is None else str(last))
    final = save_hf(trainer.model, loaded.processor, run / FINAL, dtype=loaded.compute_dtype)
    return LocalResult(
        final=final,
        steps=trainer.state.global_step,
        resumed_from=last,
        metrics=log.lines,
    )
