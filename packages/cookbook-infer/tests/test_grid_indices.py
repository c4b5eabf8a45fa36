"""The per-video index work done once per frame grid gives what transformers' own functions give, reads the
grid a fixed number of times whatever the number of videos, and keeps nothing that stops training (the rope
positions and whole forward passes are compared in test_vision_attention.py)."""

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForImageTextToText

from cookbook_data.prompts import load_prompt
from cookbook_data.testing import VideoSet
from cookbook_data.video import VisionSettings
from cookbook_infer.backends._grid_indices import index_grids_once
from cookbook_infer.backends.transformers import load_pretrained, model_inputs
from cookbook_infer.testing import Arch
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints

TOWER_FUNCTIONS = {
    "reason1": ("rot_pos_emb", "get_window_index"),
    "reason2": ("rot_pos_emb", "fast_pos_embed_interpolate"),
}
KEPT_PER_GRID = {"reason1": ("rot_pos_emb", "get_window_index"), "reason2": ("rot_pos_emb",)}
"""Functions whose indices are kept per grid (the others run on a CPU copy of the grid)."""


def _grid(count: int) -> torch.Tensor:
    """(t, h, w) of ``count`` videos: several shapes, repeated (so kept indices are reused)."""
    shapes = [(4, 8, 12), (2, 6, 10), (3, 16, 8), (1, 4, 4)]
    return torch.tensor([shapes[i % len(shapes)] for i in range(count)])


def _item_reads(function: Callable[[torch.Tensor], object], grid: torch.Tensor) -> int:
    """Values ``function(grid)`` reads back from tensors (on a GPU, each one waits for its queue to drain)."""
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        function(grid)
    counts = Counter(event.name for event in trace.events())
    return counts["aten::_local_scalar_dense"]


def _equal(ours: Any, theirs: Any) -> None:
    """Equal to the bit, through the tuples and lists the tower functions return."""
    if isinstance(ours, torch.Tensor):
        assert torch.equal(ours, theirs)
    elif isinstance(ours, tuple | list):
        assert len(ours) == len(theirs)
        for mine, stock in zip(ours, theirs, strict=True):
            _equal(mine, stock)
    else:
        assert int(ours) == int(theirs)


@pytest.mark.parametrize("arch", ["reason1", "reason2"])
def test_tower_indices_equal_the_stock_ones_and_do_not_read_the_grid_per_video(
    arch: Arch, tiny_checkpoints: TinyCheckpoints
) -> None:
    checkpoint = str(tiny_checkpoints(arch))
    ours = load_pretrained(checkpoint).model.model.visual
    stock: Any = AutoModelForImageTextToText.from_pretrained(checkpoint).model.visual
    for count in (1, 5, 9):
        grid = _grid(count)
        for name in TOWER_FUNCTIONS[arch]:
            with torch.inference_mode():
                _equal(getattr(ours, name)(grid), getattr(stock, name)(grid))
    for name in KEPT_PER_GRID[arch]:
        ours_reads = [_item_reads(getattr(ours, name), _grid(count)) for count in (1, 9)]
        stock_reads = [_item_reads(getattr(stock, name), _grid(count)) for count in (1, 9)]
        assert ours_reads[0] == ours_reads[1], name
        assert stock_reads[1] > stock_reads[0], name  # transformers' loop reads each video's grid


def test_indices_kept_during_inference_serve_training_too(
    tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet
) -> None:
    loaded = load_pretrained(str(tiny_checkpoints("reason1")))
    conversation = load_prompt("reason1_videophy2_critic_thinking").conversation(
        [VisionSettings(nframes=4).video_part(str(synthetic_videos.good["h264_24fps"].path))]
    )
    inputs = model_inputs(loaded.processor, "qwen2_5_vl", [conversation])
    with torch.inference_mode():
        loaded.model(**inputs)  # the grid's indices are computed and kept here, in inference mode
    loaded.model.train()
    loss = loaded.model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    assert loaded.model.model.visual.patch_embed.proj.weight.grad is not None


def test_other_models_are_left_alone() -> None:
    assert not index_grids_once(torch.nn.Linear(2, 2))
