"""Local SFT (TRL's SFTTrainer with our video collator) learns what the built dataset teaches."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from cookbook_data.build import read_build_info
from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import JsonlWriter, read_records
from cookbook_data.schemas import Conversation, UserMessage
from cookbook_infer.backends.base import SamplingSettings
from cookbook_infer.backends.transformers import TransformersBackend, load_pretrained
from cookbook_infer.parsing import parse_reasoning
from cookbook_infer.testing import Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_train.config import SFTConfig
from cookbook_train.data import (
    DatasetError,
    LengthBudget,
    check_dataset,
    check_lengths,
    load_split,
    parse_conversation,
    split_target,
)
from cookbook_train.launch import launch, plan_run
from cookbook_train.local._batch import sequence_lengths, sft_batch, text_tokens
from cookbook_train.local._model import CHECKPOINTS, METRICS, StepMetrics
from cookbook_train.local.sft import train_sft_local


def test_sft_overfits_a_few_labelled_videos_and_the_export_answers_like_the_labels(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, tmp_path: Path
) -> None:
    dataset = datasets("sft", "reason1")
    config = SFTConfig(
        backend="local",
        model=str(tiny_checkpoints("reason1")),
        dataset=dataset,
        output_dir=tmp_path / "run",
        lr=5e-3,
        lr_schedule="cosine",
        weight_decay=0.0,
        epochs=60,  # one step each: three samples, batch_size 3
        batch_size=3,
        mini_batch=3,
        gradient_checkpointing=False,
        save_every=1000,
        local={"device": "cpu"},
    )
    plan = plan_run(config)
    assert plan.command is None and not plan.problems()
    final = launch(plan)
    assert final == tmp_path / "run" / "final"
    assert json.loads((tmp_path / "run" / RESOLVED_CONFIG).read_text())["config"]["epochs"] == 60

    logged = read_records(tmp_path / "run" / METRICS, StepMetrics)
    losses = [line.values["loss"] for line in logged if "loss" in line.values]
    assert len(losses) == 60
    assert losses[0] > 5 and max(losses[-5:]) < 0.4

    # The export is a plain checkpoint: the inference backend loads it like a hub id and, greedy, gives each
    # video the answer it was labelled with — which it can only do by looking at the video.
    backend = TransformersBackend(str(final))
    rows = load_split(dataset, "train")
    prompts = [split_target(parse_conversation(row["conversations"]))[0] for row in rows]
    generations = backend.generate(prompts, SamplingSettings(temperature=0, max_new_tokens=12))
    answers = {row["id"]: parse_reasoning(g.text).answer for row, g in zip(rows, generations, strict=True)}
    assert answers == {name: str(label) for name, label in datasets.labels.items()}


def test_a_resumed_full_fine_tune_continues_from_the_checkpoint_s_weights(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, weights: Any, tmp_path: Path
) -> None:
    # Reason1 checkpoints hold Qwen2.5-VL's legacy weight names, which the trainer's own resume cannot match.
    base = tiny_checkpoints("reason1")
    run = tmp_path / "run"
    config = SFTConfig(
        backend="local",
        model=str(base),
        dataset=datasets("sft", "reason1"),
        output_dir=run,
        lr=1e-2,
        batch_size=3,  # one step: three samples
        mini_batch=3,
        gradient_checkpointing=False,
        local={"device": "cpu"},
    )
    first = train_sft_local(config)
    trained = weights(first.final)
    assert first.steps == 1 and any(not torch.equal(trained[k], v) for k, v in weights(base).items())
    # As if a longer run had logged step 2 and stopped before its checkpoint: the resumed run drops that line.
    with JsonlWriter(run / METRICS, StepMetrics) as writer:
        writer.write(StepMetrics(step=2, values={"loss": 1.0}))

    # A rerun has nothing left to train: it resumes the trained weights and exports them unchanged.
    again = train_sft_local(config)
    assert again.resumed_from == run / "checkpoints" / "checkpoint-1" and again.steps == 1
    resumed = weights(again.final)
    assert all(torch.equal(tensor, resumed[name]) for name, tensor in trained.items())
    assert [line.step for line in read_records(run / METRICS, StepMetrics)] == [1, 1, 1]  # loss, 2 x run summary

    # Weights that do not fit the model stop the run instead of leaving it on the base weights.
    saved = run / "checkpoints" / "checkpoint-1" / "model.safetensors"
    tensors = load_file(saved)
    save_file({name.replace("model.layers.", "model.blocks."): t for name, t in tensors.items()}, saved)
    with pytest.raises(ValueError, match=r"checkpoint-1: the checkpoint's weights do not fit .* missing_keys \(e\.g\."):
        train_sft_local(config)


@pytest.mark.parametrize(
    ("longer", "planned"), [({"max_steps": 4}, 4), ({"epochs": 3, "max_steps": None}, 9)], ids=["max_steps", "epochs"]
)
def test_a_resumed_run_that_plans_more_steps_is_refused(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, tmp_path: Path, longer: dict[str, Any], planned: int
) -> None:
    # Three samples, one a step: two epochs are six steps, cut to two by max_steps. The trainer would resume the
    # optimizer at the end of the 2-step linear decay (learning rate 0) and then jump onto the longer schedule.
    config = SFTConfig(
        backend="local",
        model=str(tiny_checkpoints("reason1")),
        dataset=datasets("sft", "reason1"),
        output_dir=tmp_path / "run",
        lr=1e-2,
        lr_schedule="linear",
        epochs=2,
        max_steps=2,
        batch_size=1,
        mini_batch=1,
        save_every=1,
        gradient_checkpointing=False,
        local={"device": "cpu"},
    )
    assert train_sft_local(config).steps == 2
    with pytest.raises(
        ValueError, match=rf"checkpoint-2: trained for 2 steps, and this run plans {planned} .* cannot stretch a linear"
    ):
        train_sft_local(config.model_copy(update=longer))
    assert sorted(path.name for path in (tmp_path / "run" / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
    ]


def test_a_row_too_long_for_max_length_stops_the_run_before_its_first_step(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, with_long_text: Any, tmp_path: Path
) -> None:
    model = tiny_checkpoints("reason1")
    dataset = with_long_text(datasets("sft", "reason1"), tmp_path / "dataset", 2)
    config = SFTConfig(
        backend="local",
        model=str(model),
        dataset=dataset,
        output_dir=tmp_path / "run",
        lr=1e-3,
        batch_size=1,
        max_length=321,
        gradient_checkpointing=False,
        local={"device": "cpu"},
    )
    # As a hub id's plan leaves it: the long row is only counted by the trainer.
    with pytest.raises(
        DatasetError, match=r"1 row\(s\) exceed .* \(video included\): row 2 \(id 'mpeg4_8fps'\)"
    ) as error:
        train_sft_local(config)
    assert not (tmp_path / "run" / METRICS).exists() and not (tmp_path / "run" / CHECKPOINTS).exists()
    # The count given is the collator's own.
    processor = load_pretrained(str(model)).processor
    row = parse_conversation(load_split(dataset, "train")[2]["conversations"])
    tokens = sequence_lengths(sft_batch(processor, "qwen2_5_vl", [row]))[0]
    assert f"row 2 (id 'mpeg4_8fps') {tokens};" in str(error.value) and tokens > 321


@pytest.mark.parametrize("arch", ["reason1", "reason2"])
def test_the_byte_bound_of_a_row_is_never_below_its_true_length(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, with_long_text: Any, tmp_path: Path, arch: Arch
) -> None:
    model = tiny_checkpoints(arch)
    dataset = with_long_text(datasets("sft", arch), tmp_path / "dataset", 0)
    config = SFTConfig(model=str(model), dataset=dataset, output_dir=tmp_path / "run", lr=1e-3)
    budget = LengthBudget.of(config, read_build_info(dataset))
    processor = load_pretrained(str(model)).processor
    for row in load_split(dataset, "train"):
        conversation = parse_conversation(row["conversations"])
        true = sequence_lengths(sft_batch(processor, config.model_type(), [conversation]))[0]
        bound = budget.bound(conversation)
        assert bound is not None and true <= bound < 4 * true, (row["id"], true, bound)
        # the tokenized text with each video at the longest (Qwen3-VL's timestamps included) never clears a row
        # one token too long
        tight = dataclasses.replace(budget, max_length=true - 1)
        assert not tight.fits(text_tokens(processor, conversation), conversation), row["id"]


def test_the_byte_bound_counts_text_as_the_tokenizer_normalises_it() -> None:
    budget = LengthBudget(max_length=10_000, video_bound=None, per_video_text=0, answer=0)

    def bound(text: str) -> int | None:
        return budget.bound(Conversation(messages=[UserMessage(content=text)]))

    ascii_bound, composed_bound = bound("a" * 100), bound("\ufb2c" * 100)  # 3 bytes, 6 once normalised to NFC
    assert ascii_bound is not None and composed_bound is not None
    assert composed_bound - ascii_bound == 500


def test_a_row_that_may_fit_with_its_own_video_is_counted_by_the_trainer_not_refused(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, with_long_text: Any, tmp_path: Path
) -> None:
    model = tiny_checkpoints("reason1")
    dataset = with_long_text(datasets("sft", "reason1"), tmp_path / "dataset", 0)
    processor = load_pretrained(str(model)).processor
    rows = load_split(dataset, "train")

    def count(conversation: Conversation) -> int:
        return sequence_lengths(sft_batch(processor, "qwen2_5_vl", [conversation]))[0]

    long_row = parse_conversation(rows[0]["conversations"])
    true = count(long_row)
    config = SFTConfig(model=str(model), dataset=dataset, output_dir=tmp_path / "run", lr=1e-3, max_length=true)
    budget = LengthBudget.of(config, read_build_info(dataset))
    assert budget.video_bound is not None and not budget.fits(text_tokens(processor, long_row), long_row)
    assert check_dataset(config).unchecked == 1  # its own video is shorter than the longest: not refused
    check_lengths(config, "train", rows, processor, count)  # the exact count lets it through
    with pytest.raises(DatasetError, match=rf"row 0 \(id '{rows[0]['id']}'\) {true};"):
        check_lengths(config.model_copy(update={"max_length": true - 1}), "train", rows, processor, count)
