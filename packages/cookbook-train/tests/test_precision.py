"""Local training on a bfloat16 GPU: full fine-tuning keeps float32 weights, LoRA's frozen base stays bfloat16."""

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from cookbook_infer.backends.transformers import load_pretrained
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_train.config import SFTConfig
from cookbook_train.launch import launch, plan_run
from cookbook_train.local import _model
from cookbook_train.local._model import load_for_training
from cookbook_train.local.sft import train_sft_local


@pytest.fixture
def bf16_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``dtype = "auto"`` picks on a GPU that supports bfloat16, decided here on the CPU."""
    monkeypatch.setattr(_model, "resolve_dtype", lambda name, device: "bfloat16")


def config(model: Path, tmp_path: Path, **settings: object) -> SFTConfig:
    return SFTConfig.model_validate(
        {"backend": "local", "model": str(model), "dataset": tmp_path, "output_dir": tmp_path / "run", "lr": 1e-5}
        | {"local": {"device": "cpu"}}
        | settings
    )


@pytest.mark.usefixtures("bf16_gpu")
def test_full_fine_tuning_keeps_float32_weights_and_computes_in_bfloat16(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path
) -> None:
    training = load_for_training(config(tiny_checkpoints("reason1"), tmp_path))
    model = training.model
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert training.compute_dtype == "bfloat16"

    ids = torch.randint(0, model.config.text_config.vocab_size, (2, 16))
    with training.autocast():
        output = model(input_ids=ids, labels=ids)
    assert output.logits.dtype == torch.bfloat16
    output.loss.backward()
    # A learning rate of 1e-5 moves nearly every weight; in bfloat16 most of these updates would round away.
    trained = [p for p in model.parameters() if p.grad is not None]
    before = [p.detach().clone() for p in trained]
    torch.optim.AdamW(trained, lr=1e-5).step()
    changed = sum(int((p.detach() != old).sum()) for p, old in zip(trained, before, strict=True))
    assert changed > 0.9 * sum(p.numel() for p in trained)


@pytest.mark.usefixtures("bf16_gpu")
def test_lora_keeps_its_frozen_base_in_bfloat16(tiny_checkpoints: TinyCheckpoints, tmp_path: Path) -> None:
    training = load_for_training(config(tiny_checkpoints("reason1"), tmp_path, lora={"target_modules": ["q_proj"]}))
    frozen = {p.dtype for p in training.model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16} and training.dtype == training.compute_dtype == "bfloat16"


@pytest.mark.usefixtures("bf16_gpu")
def test_full_fine_tuning_exports_its_compute_dtype(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, tmp_path: Path
) -> None:
    # The float32 master weights are the optimizer's: the export is bfloat16, half their size, and loads as such.
    settings = {"dataset": datasets("sft", "reason1"), "epochs": 1, "batch_size": 3, "mini_batch": 3, "save_every": 10}
    final = launch(plan_run(config(tiny_checkpoints("reason1"), tmp_path, **settings)))
    with safe_open(str(final / "model.safetensors"), framework="pt") as saved:
        assert {saved.get_tensor(name).dtype for name in saved.keys()} == {torch.bfloat16}  # noqa: SIM118
    assert load_pretrained(str(final)).model.dtype == torch.bfloat16


def test_local_sft_refuses_a_machine_whose_gpus_the_trainer_would_all_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers' Trainer would wrap the model in DataParallel and multiply the batch by the GPU count.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    settings = config(tmp_path / "model", tmp_path, local={"device": "auto"})
    with pytest.raises(ValueError, match=r"local SFT sees 4 GPUs: .* multiply batch_size by 4"):
        train_sft_local(settings)  # before anything is loaded
