from pathlib import Path

import pytest

from cookbook_infer.registry import KNOWN_MODELS, Arch, resolve_model
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
