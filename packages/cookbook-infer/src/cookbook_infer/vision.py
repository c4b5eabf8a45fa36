"""Turning conversations' video parts into model input frames: sampling (decoding) and the resize that needs torch."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal, TypeVar

from cookbook_data.schemas import Conversation
from cookbook_data.video import SampledVideo, VisionSettings, sample_frames

if TYPE_CHECKING:
    import torch

V = TypeVar("V")

MAX_DECODE_THREADS = 16
"""Most videos of one batch decoded at once (bounded by the CPUs this process may use)."""


def decode_threads(videos: int) -> int:
    """Threads for decoding ``videos`` videos: one each, up to the CPUs this process may run on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(videos, cpus, MAX_DECODE_THREADS))


def sample_conversation_videos(
    conversations: Sequence[Conversation],
    patch_factor: Literal[28, 32],
    convert: Callable[[SampledVideo], V],
) -> list[tuple[SampledVideo, V]]:
    """Every video part of ``conversations`` (in order) sampled with the vision settings it carries, each with
    ``convert`` of it (its model-input form).

    The videos of a batch are decoded and converted on parallel threads: decoding and torch's resize release the
    GIL, so a batch of N videos costs about N / cores decodes instead of N, which is what lets a batch keep a GPU
    busy. A failing video raises its own error (the batch's callers retry items one by one).
    """
    parts = [part for conversation in conversations for part in conversation.video_parts()]

    def one(part_index: int) -> tuple[SampledVideo, V]:
        part = parts[part_index]
        video = sample_frames(part.video, VisionSettings.from_video_part(part, patch_factor))
        return video, convert(video)

    if len(parts) <= 1:
        return [one(index) for index in range(len(parts))]
    with ThreadPoolExecutor(max_workers=decode_threads(len(parts)), thread_name_prefix="decode") as pool:
        return list(pool.map(one, range(len(parts))))


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
