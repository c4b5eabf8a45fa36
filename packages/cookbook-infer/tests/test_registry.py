from pathlib import Path

import pytest

from cookbook_data.video import frame_indices, resized_frame_size
from cookbook_infer.frame_rules import layer_vision, resolve_layered_config
from cookbook_infer.registry import KNOWN_MODELS, Arch, resolve_model
from cookbook_infer.run import PredictorConfig, RunConfig
from cookbook_infer.tasks import TASKS, get_task
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints

ARCHS: list[Arch] = ["reason1", "reason2"]


def test_known_models_carry_the_published_settings() -> None:
    reason1 = resolve_model("nvidia/Cosmos-Reason1-7B")
    assert reason1.arch == "reason1"
    assert (reason1.vision.fps, reason1.vision.total_pixels, reason1.vision.patch_factor) == (4, 8192 * 28 * 28, 28)
    reason2 = resolve_model("nvidia/Cosmos-Reason2-8B")
    assert reason2.arch == "reason2"
    assert reason2.vision.patch_factor == 32
    thinking, direct = reason2.reasoning_sampling, reason2.direct_sampling
    assert (thinking.temperature, thinking.top_p, thinking.top_k, thinking.presence_penalty) == (0.6, 0.95, 20, 0)
    assert (direct.temperature, direct.top_p, direct.top_k, direct.presence_penalty) == (0.7, 0.8, 20, 1.5)
    assert set(KNOWN_MODELS) >= {"nvidia/Cosmos-Reason1-7B", "nvidia/Cosmos-Reason2-2B", "nvidia/Cosmos-Reason2-8B"}


def test_local_checkpoints_are_recognised_by_their_config(tiny_checkpoints: TinyCheckpoints) -> None:
    assert resolve_model(str(tiny_checkpoints("reason1"))).arch == "reason1"
    assert resolve_model(str(tiny_checkpoints("reason2"))).arch == "reason2"
    with pytest.raises(ValueError, match="is a reason2 model, not reason1"):
        resolve_model(str(tiny_checkpoints("reason2")), "reason1")


def test_unknown_models_need_an_architecture(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give its architecture"):
        resolve_model("someone/some-vlm")
    assert resolve_model("someone/some-vlm", "reason2").arch == "reason2"


def test_every_task_has_a_template_for_both_architectures() -> None:
    for task in TASKS.values():
        for arch in ARCHS:
            assert task.template(arch).user_prompt
    with pytest.raises(ValueError, match="unknown task 'critik'; tasks: critic"):
        get_task("critik")


def test_the_reward_model_samples_frames_by_its_published_recipe() -> None:
    vision = resolve_model("nvidia/Cosmos-Reason1-7B-Reward").vision
    assert (vision.fps, vision.max_strided_frames, vision.total_pixels) == (None, 160, 9216 * 28 * 28)
    # 10 s of 30 fps 720p: every 2nd frame (150), each within 9216 * 28 * 28 * 2 / 150 pixels
    assert frame_indices(vision, 300, 30.0) == list(range(0, 300, 2))
    height, width = resized_frame_size(vision, 720, 1280, 150)
    assert height * width <= 9216 * 28 * 28 * 2 / 150
    assert height % 28 == width % 28 == 0


def test_a_run_s_frame_rule_replaces_the_model_s() -> None:
    reward = resolve_model("nvidia/Cosmos-Reason1-7B-Reward")
    assert PredictorConfig(model=reward.id, nframes=8).vision(reward).max_strided_frames is None
    assert PredictorConfig(model=reward.id, nframes=8).vision(reward).nframes == 8
    critic = resolve_model("nvidia/Cosmos-Reason1-7B")
    strided = PredictorConfig(model=critic.id, max_strided_frames=32, max_pixels=4096).vision(critic)
    assert (strided.fps, strided.max_strided_frames, strided.max_pixels) == (None, 32, 4096)
    assert strided.total_pixels == critic.vision.total_pixels
    assert PredictorConfig(model=critic.id, max_pixels=4096).vision(critic).fps == 4


def test_a_later_layer_s_frame_rule_replaces_an_earlier_one(tmp_path: Path) -> None:
    paths = {"model": "nvidia/Cosmos-Reason2-2B", "manifest": tmp_path / "m.jsonl", "out": tmp_path / "p.jsonl"}
    later_set = resolve_layered_config(RunConfig, None, ["fps=2", "total_pixels=4096", "nframes=4"], paths)
    assert (later_set.fps, later_set.nframes, later_set.total_pixels) == (None, 4, 4096)
    option = resolve_layered_config(RunConfig, None, ["nframes=4"], {**paths, "fps": 1.0, "nframes": None})
    assert (option.fps, option.nframes) == (1.0, None)
    assert layer_vision({"fps": 4, "max_pixels": 1}, {"max_pixels": 2}, {"nframes": 8}) == {
        "fps": None,
        "nframes": 8,
        "max_strided_frames": None,
        "max_pixels": 2,
    }


def test_greedy_decoding_drops_the_preset_presence_penalty_unless_asked_for() -> None:
    reason2 = resolve_model("nvidia/Cosmos-Reason2-8B")
    assert reason2.direct_sampling.presence_penalty == 1.5
    sampled = PredictorConfig(model=reason2.id).sampling(reason2, reasoning=False)
    assert (sampled.temperature, sampled.presence_penalty) == (0.7, 1.5)
    greedy = PredictorConfig(model=reason2.id, temperature=0).sampling(reason2, reasoning=False)
    assert (greedy.temperature, greedy.presence_penalty, greedy.top_k) == (0, 0.0, 20)
    asked = PredictorConfig(model=reason2.id, temperature=0, presence_penalty=0.5).sampling(reason2, reasoning=False)
    assert asked.presence_penalty == 0.5
