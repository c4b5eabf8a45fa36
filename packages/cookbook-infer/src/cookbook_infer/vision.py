"""Turning conversations' video parts into model input frames: sampling (decoding) and the resize that needs torch.

A video part becomes a :data:`ModelVideo` (its timing and its resized frames). That form is what a batch job's
CPU step (``prepare``) hands the model's worker, so the worker does no decoding, and what the backends make
themselves, on parallel threads, when given conversations alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from cookbook_data.cpus import threads_for
from cookbook_data.schemas import Conversation
from cookbook_data.video import SampledVideo, VisionSettings, sample_frames

if TYPE_CHECKING:
    import torch

ModelVideo = tuple[SampledVideo, "torch.Tensor"]
"""A video part ready for a model: the sample's timing (frame indices, fps, sizes; its native-resolution
frames dropped) and its frames resized to (T, 3, H, W) uint8."""

MAX_DECODE_THREADS = 16
"""Most videos of one batch decoded at once (bounded by the CPUs this process may use)."""


def decode_threads(videos: int) -> int:
    """Threads for decoding ``videos`` videos: one each, up to the CPUs this process may run on."""
    return threads_for(videos, MAX_DECODE_THREADS)


def model_video(video: SampledVideo) -> ModelVideo:
    """``video`` resized for the model, without its native-resolution frames (they are not needed again, and a
    job's CPU step sends the result to another process)."""
    return replace(video, frames=video.frames[:0].copy()), resize_frames(video)  # a view would keep them all


def model_videos(conversations: Sequence[Conversation], patch_factor: Literal[28, 32]) -> list[ModelVideo]:
    """Every video part of ``conversations``, in order, sampled with the vision settings it carries and resized.

    The videos of a batch are decoded on parallel threads: decoding and torch's resize release the GIL for most
    of their time, so a batch keeps more than one core busy. A failing video raises its own error (the batch's
    callers retry items one by one).
    """
    parts = [part for conversation in conversations for part in conversation.video_parts()]

    def one(part_index: int) -> ModelVideo:
        part = parts[part_index]
        return model_video(sample_frames(part.video, VisionSettings.from_video_part(part, patch_factor)))

    if len(parts) <= 1:
        return [one(index) for index in range(len(parts))]
    with ThreadPoolExecutor(max_workers=decode_threads(len(parts)), thread_name_prefix="decode") as pool:
        return list(pool.map(one, range(len(parts))))


def ready_videos(
    conversations: Sequence[Conversation], patch_factor: Literal[28, 32], videos: Sequence[ModelVideo] | None
) -> list[ModelVideo]:
    """``videos`` (made ready elsewhere) checked to be one per video part of ``conversations``, or, when None, the
    parts decoded here."""
    if videos is None:
        return model_videos(conversations, patch_factor)
    parts = sum(len(conversation.video_parts()) for conversation in conversations)
    if len(videos) != parts:
        raise ValueError(f"{len(videos)} prepared videos for {parts} video parts in the batch")
    return list(videos)


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
