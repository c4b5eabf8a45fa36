"""A Qwen-VL processor whose video processor cuts the frames into patches as uint8, then normalises them.

The stock Qwen-VL video processors group a batch's videos by shape and stack each group, normalise every frame
into a float32 copy, then cut the floats into the vision tower's patches (another full copy) and join the
groups (another): several passes over fresh float tensors the size of all a batch's frames, on the model's
thread. Here each video's uint8 frames are moved to the device (when one is given) and cut into patches there
(a quarter of the bytes of a float copy), then normalised by the video processor's own
``rescale_and_normalize`` a video at a time into one tensor for the batch, so the float temporaries are
reused rather than faulted in anew. On the tiny Reason1 and a 2-core CPU a batch of 32 videos' model input
took 24.7 ms a video the stock way and 15.8 ms this way (``benchmarks/bench_model_input.py``). The values are the
stock processor's, bit for bit (the tests compare them), and the processor's text side (the video tokens,
Qwen3-VL's timestamps) is its own, unchanged.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def cut_patches(frames: torch.Tensor, patch_size: int, temporal_patch_size: int, merge_size: int) -> torch.Tensor:
    """(T, C, H, W) frames as the vision tower's patches: (t·h·w, C·temporal·patch·patch), in the order and
    layout Qwen-VL's video processors give, with the same last-frame repeats when T is not a whole number of
    temporal patches. Works on any dtype (uint8 here, so the copy is a quarter of a float one)."""
    import torch

    if frames.shape[0] % temporal_patch_size:
        repeats = frames[-1:].expand(temporal_patch_size - 1, *frames.shape[1:])
        frames = torch.cat([frames, repeats])
    t, h, w = patch_grid(frames, patch_size, temporal_patch_size)
    channels = frames.shape[1]
    m = merge_size
    blocks = frames.reshape(t, temporal_patch_size, channels, h // m, m, patch_size, w // m, m, patch_size)
    # (t, h-blocks, w-blocks, merge rows, merge columns) patches, each (channel, time, row, column)
    return blocks.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(t * h * w, -1)


def patch_grid(frames: torch.Tensor, patch_size: int, temporal_patch_size: int) -> tuple[int, int, int]:
    """(t, h, w) patches of (T, C, H, W) frames: a last, partial temporal patch counts (it is filled)."""
    count, _, height, width = frames.shape
    return -(-count // temporal_patch_size), height // patch_size, width // patch_size


_NORMALISATION = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
"""The video processor's settings for ``rescale_and_normalize``: a call's own, else the processor's."""


def _hashable(value: Any) -> Any:
    """Lists as tuples, as the stock ``preprocess`` passes them (the fused mean and std are cached by value)."""
    return tuple(value) if isinstance(value, list) else value


class _PatchingVideoProcessor:
    """Stands in for a Qwen-VL video processor given frames already sampled and resized (``do_resize`` and
    ``do_sample_frames`` off, as :func:`cookbook_infer.backends.transformers.model_inputs` always asks); its
    settings and everything else are the stock processor's."""

    def __init__(self, stock: Any) -> None:
        self._stock = stock

    def __getattr__(self, name: str) -> Any:
        if name == "_stock":  # not set yet (a copy being made): no stock processor to ask
            raise AttributeError(name)
        return getattr(self._stock, name)

    def __call__(self, videos: list[torch.Tensor], **kwargs: Any) -> Any:
        import torch
        from transformers.feature_extraction_utils import BatchFeature
        from transformers.video_utils import make_batched_metadata

        if kwargs.get("do_resize") or kwargs.get("do_sample_frames"):
            raise ValueError("frames are resized and sampled before they reach the processor")
        stock = self._stock
        setting = {name: _hashable(kwargs.get(name, getattr(stock, name))) for name in _NORMALISATION}
        sizes = (stock.patch_size, stock.temporal_patch_size)
        device = kwargs.get("device")
        on_device = videos if device is None else [video.to(device) for video in videos]  # cut where it is cheap
        patches = [cut_patches(video, *sizes, stock.merge_size) for video in on_device]
        count, width, channels = sum(len(rows) for rows in patches), patches[0].shape[1], videos[0].shape[1]
        joined = torch.empty((count, width), dtype=torch.float32, device=patches[0].device)
        start = 0
        for rows in patches:  # a video at a time: its float temporaries are reused, not faulted in anew
            planes = rows.view(len(rows), channels, -1, stock.patch_size)  # each patch's values, channel first
            joined[start : start + len(rows)] = stock.rescale_and_normalize(planes, **setting).view(len(rows), -1)
            start += len(rows)
        grids = [patch_grid(video, *sizes) for video in videos]
        features: dict[str, Any] = {"pixel_values_videos": joined, "video_grid_thw": torch.tensor(grids)}
        if kwargs.get("return_metadata"):
            given: Any = kwargs.get("video_metadata")  # None: the defaults the stock processor would infer
            features["video_metadata"] = make_batched_metadata(videos, video_metadata=given)
        return BatchFeature(data=features)


def patching_processor(processor: Any) -> Any:
    """A shallow copy of a Qwen-VL ``processor`` whose video processor is the patching stand-in (the tokenizer
    and everything else shared); the given processor is left as it is."""
    patching = copy.copy(processor)
    patching.video_processor = _PatchingVideoProcessor(processor.video_processor)
    return patching
