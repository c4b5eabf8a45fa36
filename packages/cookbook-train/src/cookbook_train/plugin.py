"""What the entry script hands cosmos-rl: the dataset, the data packer of the model's architecture and the
reward functions, built from the recipe embedded in the cosmos-rl TOML.

cosmos-rl builds the dataset in the controller and in every worker, so :class:`CookbookDataset` only opens the
saved dataset (memory-mapped) and parses a row when it is asked for one. Frames are not decoded here: the data
packer samples them from the vision settings stored in each video part (Reason1 through
``Qwen2_5_VLM_DataPacker``, Reason2 through ``HFVLMDataPacker``, both with qwen-vl-utils' sampling rules, which
:mod:`cookbook_data.video` reproduces for inference and the local trainer).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from cookbook_infer.registry import Arch
from cookbook_train.config import GRPOConfig, SFTConfig, TrainConfig, load_run_config
from cookbook_train.data import load_split, messages_of, reference_of
from cookbook_train.render import CUSTOM_KEY
from cookbook_train.rewards import reward_functions


class CookbookDataset(Dataset[list[dict[str, Any]]]):
    """One split of a built dataset as cosmos-rl reads it.

    ``dataset[i]`` is the message list with its video parts: with the final assistant turn for SFT, without it
    (the prompt) for GRPO, whose answer :meth:`get_reference_answer` returns.
    """

    def __init__(self, folder: str | Path, split: str, *, with_target: bool) -> None:
        self.folder = Path(folder)
        self.split = split
        self.with_target = with_target
        self._rows: Any = None

    def setup(self, config: Any = None, *args: Any, **kwargs: Any) -> None:
        """Called by cosmos-rl with its config once the dataset is mounted; opens the split."""
        self._open()

    def _open(self) -> Any:
        if self._rows is None:
            self._rows = load_split(self.folder, self.split)
        return self._rows

    def __len__(self) -> int:
        return len(self._open())

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        return messages_of(self._open()[index], keep_target=self.with_target)

    def get_reference_answer(self, index: int) -> str:
        """The reference answer of row ``index`` (what GRPO rewards compare with)."""
        return reference_of(self._open()[index])


def data_packer(arch: Arch) -> Any:
    """A fresh cosmos-rl data packer for the architecture (cosmos-rl calls its ``setup(config)``)."""
    from cosmos_rl.dispatcher.data.packer import HFVLMDataPacker, Qwen2_5_VLM_DataPacker

    return Qwen2_5_VLM_DataPacker() if arch == "reason1" else HFVLMDataPacker()


def embedded_config(data: dict[str, Any]) -> SFTConfig | GRPOConfig:
    """The recipe stored under ``[custom.cookbook]`` of a rendered cosmos-rl config (as tables)."""
    custom = data.get("custom", {})
    if CUSTOM_KEY not in custom:
        raise ValueError(f"the cosmos-rl config has no [custom.{CUSTOM_KEY}] table; render it with cookbook-train")
    return load_run_config(custom[CUSTOM_KEY])


def read_embedded_config(path: Path) -> SFTConfig | GRPOConfig:
    """The recipe embedded in a cosmos-rl TOML file."""
    with path.open("rb") as handle:
        return embedded_config(tomllib.load(handle))


def worker_kwargs(config: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of ``cosmos_rl.launcher.worker_entry.main`` for the recipe."""
    grpo = isinstance(config, GRPOConfig)
    kwargs: dict[str, Any] = {
        "dataset": CookbookDataset(config.dataset, config.train_split, with_target=not grpo),
        "data_packer": data_packer(config.resolved_arch()),
    }
    if config.validate_every is not None:
        kwargs["val_dataset"] = CookbookDataset(config.dataset, config.val_split, with_target=not grpo)
        kwargs["val_data_packer"] = data_packer(config.resolved_arch())
    if isinstance(config, GRPOConfig):
        kwargs["reward_fns"] = reward_functions(config)
    return kwargs
