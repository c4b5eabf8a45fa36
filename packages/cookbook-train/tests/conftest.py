"""Datasets built by cookbook-data's own builders from the synthetic test videos, as users hand them over."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cookbook_data.build import BuildConfig, build_rl, build_sft
from cookbook_data.schemas import VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.testing import Arch

LABELLED = {"h264_24fps": 1, "h264_portrait_15fps": 3, "mpeg4_8fps": 5}
"""Videos and their physical-plausibility labels: three different answers to learn."""
PATCH = {"reason1": 28, "reason2": 32}
TOKENS = 16
"""Visual tokens per frame pair: frames small enough for fast CPU tests, large enough to tell the videos apart."""
PROMPT = """\
system_prompt: "You are a helpful video analyzer."
user_prompt: "Rate the physics from 1 to 5. Answer as <answer>N</answer>."
"""
THINKING_PROMPT = """\
system_prompt: "You are a helpful video analyzer."
user_prompt: "Rate the physics from 1 to 5. Answer as <think>why</think> then <answer>N</answer>."
"""


class Datasets:
    """Builds, once per session, an SFT and an RL dataset for each architecture from a three-video manifest."""

    labels = LABELLED

    def __init__(self, root: Path, videos: VideoSet) -> None:
        self.root = root
        self.videos = videos
        self.built: dict[tuple[str, str], Path] = {}

    def manifest(self) -> Path:
        path = self.root / "manifest.jsonl"
        if not path.exists():
            samples = [
                VideoSample(id=name, path=str(self.videos.good[name].path), labels={"pc": label})
                for name, label in LABELLED.items()
            ]
            path.write_text("".join(sample.model_dump_json() + "\n" for sample in samples))
        return path

    def prompt(self, thinking: bool) -> Path:
        path = self.root / ("thinking.yaml" if thinking else "answer.yaml")
        path.write_text(THINKING_PROMPT if thinking else PROMPT)
        return path

    def __call__(self, kind: str, arch: Arch) -> Path:
        if (kind, arch) not in self.built:
            patch = PATCH[arch]
            config = BuildConfig(
                manifest=self.manifest(),
                out=self.root / f"{kind}-{arch}",
                prompt=str(self.prompt(thinking=kind == "rl")),
                val_fraction=0,
                nframes=2,
                min_pixels=TOKENS * patch * patch,
                max_pixels=TOKENS * patch * patch,
                total_pixels=None,
                patch_factor=patch,
                shuffle=False,
            )
            (build_sft if kind == "sft" else build_rl)(config)
            self.built[(kind, arch)] = config.out
        return self.built[(kind, arch)]


@pytest.fixture(scope="session")
def datasets(tmp_path_factory: pytest.TempPathFactory, synthetic_videos: VideoSet) -> Datasets:
    """``datasets("sft" | "rl", "reason1" | "reason2")`` -> folder of a built dataset."""
    return Datasets(tmp_path_factory.mktemp("datasets"), synthetic_videos)


LONG_TEXT = " ".join(f"because{i}" for i in range(300))
"""A text of about 3k bytes: far more tokens than a short ``max_length`` leaves beside a tiny video."""


def _with_long_text(dataset: Path, folder: Path, row: int) -> Path:
    from datasets import DatasetDict, load_from_disk

    train = load_from_disk(str(dataset))["train"].to_list()
    messages = json.loads(train[row]["conversations"])
    if messages[-1]["role"] == "assistant":
        messages[-1]["content"] = LONG_TEXT
    else:
        messages[-1]["content"][-1]["text"] = LONG_TEXT
    train[row]["conversations"] = json.dumps(messages)
    DatasetDict({"train": load_from_disk(str(dataset))["train"].from_list(train)}).save_to_disk(str(folder))
    shutil.copy(dataset / "build_info.json", folder / "build_info.json")
    return folder


@pytest.fixture(scope="session")
def with_long_text() -> Callable[[Path, Path, int], Path]:
    """``with_long_text(dataset, folder, row)`` -> ``folder``, a copy of a built dataset whose train row ``row``
    has a long text: the answer of an SFT row, the question of a prompt-only (RL) row."""
    return _with_long_text


@pytest.fixture(scope="session")
def weights() -> Callable[[Path], dict[str, torch.Tensor]]:
    """``weights(folder)`` -> name -> tensor of a saved checkpoint, loaded with ``from_pretrained`` (which renames
    Qwen2.5-VL's legacy weight names)."""

    def load(folder: Path) -> dict[str, torch.Tensor]:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
        return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}

    return load
