"""Turning sampled frames into model input tensors (the resize step that needs torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cookbook_data.video import SampledVideo

if TYPE_CHECKING:
    import torch


def resize_frames(video: SampledVideo) -> torch.Tensor:
    """(T, 3, H, W) uint8 frames resized to the sampled size with antialiased bicubic interpolation,
    the interpolation Qwen-VL checkpoints were trained with.

    The values are those of ``torchvision.transforms.functional.resize`` on the whole (T, 3, H, W) batch, as
    qwen-vl-utils calls it (float interpolation, clamped and rounded), bit for bit. Frames are resized one at
    a time from a float copy in (1, 3, H, W) layout, which keeps the working set in cache and runs torch's
    kernel on contiguous rows.
    """
    import torch
    import torch.nn.functional as F

    frames = torch.from_numpy(video.frames)
    count, height, width, _ = frames.shape
    size = (video.resized_height, video.resized_width)
    resized = torch.empty((count, 3, *size), dtype=torch.uint8)
    planar = torch.empty((1, 3, height, width), dtype=torch.float32)
    for index in range(count):
        planar.copy_(frames[index].permute(2, 0, 1).unsqueeze(0))
        output = F.interpolate(planar, size=size, mode="bicubic", align_corners=False, antialias=True)
        resized[index].copy_(output[0].clamp_(0, 255).round_())
    return resized
