"""Frames the backends feed the model equal what qwen-vl-utils (the reference the checkpoints were trained
with) produces for the same settings: same frame indices, same resized pixels."""

from typing import Any

import pytest
import torch
from qwen_vl_utils import fetch_video

from cookbook_data.testing import ODD_KINDS, VideoSet
from cookbook_data.testing.videos import GOOD_VIDEOS
from cookbook_data.video import VisionSettings, sample_frames
from cookbook_infer.vision import resize_frames

SETTINGS: list[dict[str, Any]] = [
    {},
    {"fps": 4.0},
    {"fps": 1.0},
    {"fps": 16.0},
    {"nframes": 8},
    {"nframes": 7},
    {"fps": 4.0, "total_pixels": 8192 * 28 * 28},
    {"fps": 2.0, "max_pixels": 64 * 28 * 28, "min_pixels": 16 * 28 * 28},
    {"fps": 8.0, "min_frames": 6, "max_frames": 10},
]


@pytest.mark.parametrize("patch", [14, 16])
@pytest.mark.parametrize("options", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
@pytest.mark.parametrize("name", GOOD_VIDEOS)
def test_sampled_frames_equal_qwen_vl_utils(
    synthetic_videos: VideoSet, name: str, options: dict[str, Any], patch: int
) -> None:
    path = str(synthetic_videos.good[name].path)
    reference, metadata = fetch_video({"video": path, **options}, image_patch_size=patch, return_video_metadata=True)

    sampled = sample_frames(path, VisionSettings(patch_factor=2 * patch, **options))
    assert sampled.frame_indices == metadata["frames_indices"]
    assert sampled.total_frames == metadata["total_num_frames"]
    assert sampled.source_fps == pytest.approx(metadata["fps"])
    ours = resize_frames(sampled)
    assert ours.shape == reference.shape
    assert torch.equal(ours.float(), reference)


@pytest.mark.parametrize("patch", [14, 16])
@pytest.mark.parametrize("kind", ODD_KINDS)
def test_odd_videos_sample_as_qwen_vl_utils(synthetic_videos: VideoSet, kind: str, patch: int) -> None:
    """Variable frame rate (frames by index, fps averaged), display rotation (frames turned, as decord turns
    them) and a very large size give qwen-vl-utils' frames too."""
    path = str(synthetic_videos.odd[kind])
    reference, metadata = fetch_video({"video": path}, image_patch_size=patch, return_video_metadata=True)

    sampled = sample_frames(path, VisionSettings(patch_factor=2 * patch))
    assert sampled.frame_indices == metadata["frames_indices"]
    assert sampled.source_fps == pytest.approx(metadata["fps"])
    assert torch.equal(resize_frames(sampled).float(), reference)
