"""LoRA on the local backend: adapters train, runs resume, and the export merges them into plain weights."""

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_train.config import GRPOConfig, SFTConfig
from cookbook_train.export import export_checkpoint
from cookbook_train.local.grpo import train_grpo_local
from cookbook_train.local.sft import train_sft_local

TARGETS = ("q_proj", "v_proj")


def test_lora_sft_resumes_and_exports_merged_weights(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, weights: Any, tmp_path: Path
) -> None:
    base = tiny_checkpoints("reason2")
    settings = {
        "backend": "local",
        "model": str(base),
        "dataset": datasets("sft", "reason2"),
        "output_dir": tmp_path / "run",
        "lr": 1e-2,
        "lr_schedule": "constant",
        "epochs": 3,  # one step each: three samples, batch_size 3
        "batch_size": 3,
        "mini_batch": 3,
        "save_every": 1,
        "gradient_checkpointing": False,
        "lora": {"rank": 4, "alpha": 8, "target_modules": list(TARGETS)},
        "local": {"device": "cpu"},
    }
    first = train_sft_local(SFTConfig(max_steps=2, **settings))
    assert first.steps == 2 and first.resumed_from is None
    # Checkpoints hold the adapters only, as peft saves them.
    adapter = load_file(tmp_path / "run" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    assert adapter and all("lora_" in name for name in adapter)

    second = train_sft_local(SFTConfig(max_steps=3, **settings))
    assert second.resumed_from == tmp_path / "run" / "checkpoints" / "checkpoint-2"
    assert second.steps == 3 and [line.step for line in second.metrics if "loss" in line.values] == [3]
    # max_steps cuts the epochs short but never extends them (as in cosmos-rl): the three epochs are done.
    third = train_sft_local(SFTConfig(max_steps=10, **settings))
    assert third.steps == 3 and not [line for line in third.metrics if "loss" in line.values]

    before, after = weights(base), weights(second.final)
    assert before.keys() == after.keys()  # plain weights: no adapter tensors, loadable without peft
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    language = {name for name in before if ".language_model." in name and name.endswith(".weight")}
    adapted = {name for name in language if any(f".{target}." in name for target in TARGETS)}
    assert adapted and changed == adapted  # every adapted projection moved, nothing else did

    # The same adapters, exported from the checkpoint folder (as for a cosmos-rl LoRA export), merge identically.
    again = export_checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint-3", tmp_path / "exported", base=str(base))
    merged = weights(again)
    assert all(torch.equal(tensor, merged[name]) for name, tensor in after.items())


def test_lora_grpo_with_a_kl_penalty_to_the_adapter_free_model(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, weights: Any, tmp_path: Path
) -> None:
    config = GRPOConfig(
        backend="local",
        model=str(tiny_checkpoints("reason1")),
        dataset=datasets("rl", "reason1"),
        output_dir=tmp_path / "run",
        rewards=[{"name": "format"}, {"name": "score_accuracy"}],
        lr=1e-2,
        max_steps=100,  # more than the epoch's three steps (one prompt each): the epoch is what runs
        batch_size=4,
        mini_batch=2,
        num_generations=4,
        max_response_length=6,
        kl_beta=0.05,
        gradient_checkpointing=False,
        lora={"rank": 4, "target_modules": ["q_proj"]},
        val_split="train",
        validate_every=1,
        local={"device": "cpu", "logging_steps": 2},
    )
    result = train_grpo_local(config)
    # Every validation is logged, on logging steps or not.
    assert result.steps == 3 and [line.step for line in result.metrics] == [1, 2, 3]
    assert all(0 <= line.values["val_reward"] <= 2 for line in result.metrics)
    kl = [line.values["kl"] for line in result.metrics]
    for line in result.metrics:
        assert {"reward/format", "reward/score_accuracy", "kl", "loss"} <= set(line.values)
    assert all(value >= 0 for value in kl)
    assert kl[0] < 1e-6  # before the first update the policy is the reference
    exported = weights(result.final)
    assert not any("lora" in name for name in exported)
