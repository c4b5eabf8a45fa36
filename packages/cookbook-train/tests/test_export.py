"""Exporting checkpoint folders that lack processor files or the chat template (what training exports write)."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cookbook_infer.backends.transformers import load_pretrained
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_train.export import export_checkpoint, latest_cosmos_export, save_hf


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {name: tensor for file in folder.glob("*.safetensors") for name, tensor in load_file(file).items()}


def test_weights_without_a_processor_take_the_base_model_s(tiny_checkpoints: TinyCheckpoints, tmp_path: Path) -> None:
    base = tiny_checkpoints("reason1")
    weights_only = tmp_path / "step_3"
    load_pretrained(str(base)).model.save_pretrained(weights_only)
    assert not (weights_only / "preprocessor_config.json").exists()

    with pytest.raises(ValueError, match="holds no processor with a chat template"):
        export_checkpoint(weights_only, tmp_path / "refused")
    exported = export_checkpoint(weights_only, tmp_path / "exported", base=str(base))

    reloaded = load_pretrained(str(exported))  # a plain checkpoint: model and processor from one folder
    assert reloaded.processor.tokenizer.get_vocab() == load_pretrained(str(base)).processor.tokenizer.get_vocab()
    original, saved = weights(weights_only), weights(exported)
    assert original.keys() == saved.keys()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in original.items())


def test_a_cosmos_rl_export_without_the_chat_template_takes_the_base_model_s(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path
) -> None:
    base = tiny_checkpoints("reason1")
    assert (base / "chat_template.jinja").is_file()
    # What cosmos-rl writes to safetensors/step_N: the weights, then every *.json of the starting model.
    step = tmp_path / "step_10"
    load_pretrained(str(base)).model.save_pretrained(step)
    for file in base.glob("*.json"):
        if not (step / file.name).exists():
            shutil.copy(file, step)
    assert (step / "preprocessor_config.json").is_file() and not (step / "chat_template.jinja").exists()

    exported = export_checkpoint(step, tmp_path / "exported", base=str(base))
    processor = load_pretrained(str(exported)).processor
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    expected = load_pretrained(str(base)).processor.apply_chat_template(messages, tokenize=False)
    assert processor.apply_chat_template(messages, tokenize=False) == expected

    with pytest.raises(ValueError, match="holds no processor with a chat template"):
        export_checkpoint(step, tmp_path / "refused")


def test_a_processor_without_a_chat_template_is_not_exported(tiny_checkpoints: TinyCheckpoints, tmp_path: Path) -> None:
    loaded = load_pretrained(str(tiny_checkpoints("reason1")))
    loaded.processor.chat_template = None
    with pytest.raises(ValueError, match="without a chat template"):
        save_hf(loaded.model, loaded.processor, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_no_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "out")


def test_the_latest_export_is_the_last_step_of_the_newest_launch(tmp_path: Path) -> None:
    for launch, step in (("20250101000000", 500), ("20250301000000", 200), ("20250301000000", 180)):
        (tmp_path / "cosmos" / launch / "safetensors" / f"step_{step}").mkdir(parents=True)
    assert latest_cosmos_export(tmp_path) == tmp_path / "cosmos" / "20250301000000" / "safetensors" / "step_200"
    assert latest_cosmos_export(tmp_path / "none") is None


def test_a_cosmos_rl_lora_export_merges_into_the_base_model(tiny_checkpoints: TinyCheckpoints, tmp_path: Path) -> None:
    from cosmos_rl.policy.config import LoraConfig as CosmosLoraConfig

    base = tiny_checkpoints("reason1")
    before = load_pretrained(str(base)).model.state_dict()
    # What cosmos-rl 0.4.7 writes with LoRA: adapters under the legacy Qwen2.5-VL names, and its own LoRA settings
    # as adapter_config.json (alpha_pattern null, r_pattern, lora_names ...; llm_trainer.py's export).
    lora = CosmosLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], r_pattern={"v_proj": 2})
    step = tmp_path / "step_5"
    step.mkdir()
    settings = lora.model_dump(mode="json") | {"base_model_name_or_path": str(base), "peft_type": "LORA"}
    assert settings["alpha_pattern"] is None and "lora_names" in settings
    (step / "adapter_config.json").write_text(json.dumps(settings))
    torch.manual_seed(0)
    adapters, expected = {}, {}
    for name, weight in before.items():
        if ".language_model." in name and name.endswith(("q_proj.weight", "v_proj.weight")):
            rank = 2 if "v_proj" in name else 4
            a, b = torch.randn(rank, weight.shape[1]), torch.randn(weight.shape[0], rank)
            legacy = name.removesuffix(".weight").replace("model.language_model.", "model.")
            adapters[f"base_model.model.{legacy}.lora_A.weight"] = a
            adapters[f"base_model.model.{legacy}.lora_B.weight"] = b
            expected[name] = weight + 8 / rank * b @ a
    save_file(adapters, step / "adapter_model.safetensors")

    after = load_pretrained(str(export_checkpoint(step, tmp_path / "exported"))).model.state_dict()
    assert {name for name in before if not torch.equal(before[name], after[name])} == set(expected)
    assert all(torch.allclose(after[name], tensor, atol=1e-5) for name, tensor in expected.items())


def write_adapter(folder: Path, base: Path, target: str, rename: Callable[[int, str], str]) -> dict[str, torch.Tensor]:
    """A peft adapter folder on ``base`` with random weights for each linear layer whose name ends with ``target``,
    each saved under ``rename(index, module name)``; returns the merged weights it should give, by weight name."""
    before = load_pretrained(str(base)).model.state_dict()
    folder.mkdir()
    settings = {
        "peft_type": "LORA",
        "r": 2,
        "lora_alpha": 2,
        "target_modules": [target],
        "base_model_name_or_path": str(base),
    }
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    torch.manual_seed(0)
    adapters, expected = {}, {}
    linear = [name for name, weight in before.items() if name.endswith(f".{target}.weight") and weight.dim() == 2]
    for index, name in enumerate(linear):
        a, b = torch.randn(2, before[name].shape[1]), torch.randn(before[name].shape[0], 2)
        module = rename(index, name.removesuffix(".weight"))
        adapters[f"base_model.model.{module}.lora_A.weight"] = a
        adapters[f"base_model.model.{module}.lora_B.weight"] = b
        expected[name] = before[name] + b @ a
    save_file(adapters, folder / "adapter_model.safetensors")
    return expected


@pytest.mark.parametrize(("renamed", "unused"), [(1, 4), (2, 2)], ids=["none-match", "half-match"])
def test_an_adapter_whose_tensors_match_no_module_is_refused(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path, renamed: int, unused: int
) -> None:
    base = tiny_checkpoints("reason1")

    def rename(index: int, module: str) -> str:  # another model's layout for every `renamed`-th layer
        return module.replace("model.language_model.layers", "transformer.h") if index % renamed == 0 else module

    write_adapter(tmp_path / "adapter", base, "q_proj", rename)
    with pytest.raises(ValueError, match=rf"{unused} adapter tensors match no module .*transformer\.h\.0\.self_attn"):
        export_checkpoint(tmp_path / "adapter", tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


def test_modules_peft_wraps_beyond_the_adapter_s_tensors_merge_as_nothing(
    tiny_checkpoints: TinyCheckpoints, tmp_path: Path
) -> None:
    base = tiny_checkpoints("reason1")
    # "proj" makes peft wrap the vision patch embedding (a Conv3d) too, which cosmos-rl (nn.Linear only) does not train.
    expected = write_adapter(tmp_path / "adapter", base, "proj", lambda index, module: module)
    assert "model.visual.patch_embed.proj.weight" not in expected and len(expected) == 2

    before = load_pretrained(str(base)).model.state_dict()
    after = load_pretrained(str(export_checkpoint(tmp_path / "adapter", tmp_path / "exported"))).model.state_dict()
    assert {name for name in before if not torch.equal(before[name], after[name])} == set(expected)
    assert all(torch.allclose(after[name], tensor, atol=1e-5) for name, tensor in expected.items())
