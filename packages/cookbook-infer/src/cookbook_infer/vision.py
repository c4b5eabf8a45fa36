"""Turning sampled frames into model input tensors (the resize step that needs torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cookbook_data.video import SampledVideo

if TYPE_CHECKING:
    import torch


def resize_frames(video: SampledVideo) -> torch.Tensor:
    """(T, 3, H, W) uint8 frames resized to the sampled size with antialiased bicubic interpolation,
    the interpolation Qwen-VL checkpoints were trained with."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2)
    resized: torch.Tensor = resize(
        frames,
        [video.resized_height, video.resized_width],
        interpolation=InterpolationMode.BICUBIC,
        antialias=True,
    )
    return resized
