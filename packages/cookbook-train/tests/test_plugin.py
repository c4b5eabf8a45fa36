"""The cosmos-rl plug-in: our dataset through cosmos-rl's own data packers, on a tiny processor and real videos.

The packers sample frames with qwen-vl-utils from the vision settings stored in each video part; the local
trainer and inference sample them with cookbook_data.video and call the processor directly. Both must give the
model the same tokens, the same pixels and (for SFT) the same labels.
"""

from pathlib import Path
from typing import Any

import pytest

from cookbook_infer.backends.transformers import load_pretrained, model_inputs
from cookbook_infer.testing import Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_train import entry
from cookbook_train.config import GRPOConfig, SFTConfig
from cookbook_train.data import load_split, parse_conversation, split_target
from cookbook_train.local._batch import IGNORE_INDEX, sft_batch
from cookbook_train.plugin import CookbookDataset, read_embedded_config, worker_kwargs
from cookbook_train.render import render, to_toml, validate_rendered

ARCHS: list[Arch] = ["reason1", "reason2"]
PACKERS = {"reason1": "Qwen2_5_VLM_DataPacker", "reason2": "HFVLMDataPacker"}


def mounted(config: SFTConfig | GRPOConfig) -> dict[str, Any]:
    """worker_kwargs for the config, set up as cosmos-rl sets them up (with its validated config)."""
    cosmos = validate_rendered(render(config))
    kwargs = worker_kwargs(config)
    kwargs["dataset"].setup(cosmos)
    kwargs["data_packer"].setup(cosmos)
    return kwargs


@pytest.mark.parametrize("arch", ARCHS)
def test_sft_samples_reach_the_model_as_the_local_trainer_and_inference_build_them(
    arch: Arch, tiny_checkpoints: TinyCheckpoints, datasets: Any, tmp_path: Path
) -> None:
    model = str(tiny_checkpoints(arch))
    config = SFTConfig(model=model, dataset=datasets("sft", arch), output_dir=tmp_path, lr=1e-5)
    kwargs = mounted(config)
    dataset, packer = kwargs["dataset"], kwargs["data_packer"]
    assert type(packer).__name__ == PACKERS[arch]
    processor = load_pretrained(model).processor
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    rows = load_split(config.dataset, "train")
    assert len(dataset) == len(rows) == 3
    for index in range(len(dataset)):
        messages = dataset[index]
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert messages[1]["content"][0]["type"] == "video" and "max_pixels" in messages[1]["content"][0]
        packed = packer.sft_process_sample(messages)
        ours = sft_batch(processor, config.model_type(), [parse_conversation(rows[index]["conversations"])])
        # Same tokens (video placeholders and, for Reason2, frame timestamps included), same pixels.
        assert packed["input_ids"] == ours["input_ids"][0].tolist()
        count = sum(token == video_token for token in packed["input_ids"])
        assert count == int(ours["video_grid_thw"].prod()) // 4 > 0
        assert packed["video_grid_thw"].tolist() == ours["video_grid_thw"].tolist()
        assert packed["pixel_values_videos"].shape == ours["pixel_values_videos"].shape
        assert (packed["pixel_values_videos"].float() - ours["pixel_values_videos"].float()).abs().max() < 1e-4
        # Same labels: the assistant's answer and the end of its turn, nothing else.
        labels = ours["labels"][0]
        assert packed["label_ids"] == labels.tolist()
        answer = processor.tokenizer.decode(labels[labels != IGNORE_INDEX])
        assert answer == f"<answer>\n{rows[index]['reference']}\n</answer><|im_end|>"
        batch = packer.sft_collate_fn([packed], packer.sft_compute_max_len([packed]), IGNORE_INDEX)
        assert batch["input_ids"].shape == batch["label_ids"].shape == (1, len(packed["input_ids"]))


@pytest.mark.parametrize("arch", ARCHS)
def test_grpo_prompts_and_rollouts_pack_for_the_policy(
    arch: Arch, tiny_checkpoints: TinyCheckpoints, datasets: Any, tmp_path: Path
) -> None:
    model = str(tiny_checkpoints(arch))
    config = GRPOConfig(
        model=model,
        dataset=datasets("rl", arch),
        output_dir=tmp_path,
        lr=1e-6,
        rewards=[{"name": "format"}, {"name": "score_accuracy", "weight": 2.0}],
    )
    kwargs = mounted(config)
    dataset, packer = kwargs["dataset"], kwargs["data_packer"]
    assert [(fn.__name__, weight) for fn, weight in kwargs["reward_fns"]] == [
        ("format_reward", 1.0),
        ("score_accuracy_reward", 2.0),
    ]
    rows = load_split(config.dataset, "train")
    processor = load_pretrained(model).processor
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    messages = dataset[0]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert dataset.get_reference_answer(0) == rows[0]["reference"] == "1"
    rollout = packer.get_rollout_input(messages)
    assert set(rollout) >= {"prompt", "multi_modal_data"} and len(rollout["multi_modal_data"]["video"]) == 1
    completion = "<think>falls</think>\n\n<answer>1</answer>"
    policy = packer.get_policy_input(messages, completion)
    prompt = split_target(parse_conversation(rows[0]["conversations"]))[0]
    ours = model_inputs(processor, config.model_type(), [prompt])
    prompt_ids = ours["input_ids"][0].tolist()
    completion_ids = processor.tokenizer(completion)["input_ids"]
    assert policy["input_ids"] == prompt_ids + completion_ids
    assert sum(token == video_token for token in policy["input_ids"]) == int(ours["video_grid_thw"].prod()) // 4
    assert sum(policy["logprob_masks"]) == len(completion_ids)
    batch = packer.policy_collate_fn([policy], packer.policy_compute_max_len([policy]))
    assert batch["input_ids"].shape == batch["logprob_masks"].shape


def test_the_entry_script_reads_the_recipe_back_from_the_rendered_toml(
    tiny_checkpoints: TinyCheckpoints, datasets: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = GRPOConfig(
        model=str(tiny_checkpoints("reason2")),
        dataset=datasets("rl", "reason2"),
        output_dir=tmp_path / "run",
        lr=1e-6,
        validate_every=5,
        rewards=[{"name": "format"}],
    )
    path = tmp_path / "cosmos-rl.toml"
    path.write_text(to_toml(render(config)))
    assert read_embedded_config(path) == config.with_absolute_paths()
    kwargs = worker_kwargs(read_embedded_config(path))
    assert isinstance(kwargs["val_dataset"], CookbookDataset) and kwargs["val_dataset"].split == "val"
    assert type(kwargs["val_data_packer"]).__name__ == "HFVLMDataPacker"

    # What cosmos-rl's launcher runs in every role: `python -m cookbook_train.entry --port N --config <toml>`.
    from cosmos_rl.launcher import worker_entry

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(worker_entry, "main", lambda **kwargs: calls.append(kwargs))
    entry.main(["--port", "8123", "--config", str(path)])
    (call,) = calls
    assert call["args"].config == str(path) and call["args"].port == 8123
    assert isinstance(call["dataset"], CookbookDataset) and call["dataset"].split == "train"
    assert [fn.__name__ for fn, _ in call["reward_fns"]] == ["format_reward"]
