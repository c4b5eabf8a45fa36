import pytest
from pydantic import ValidationError

from cookbook_data import video as video_module
from cookbook_data.schemas import VideoPart
from cookbook_data.testing import BROKEN_KINDS, VideoSet
from cookbook_data.testing.videos import GOOD_VIDEOS, GREY_CYCLE
from cookbook_data.video import (
    VideoDecodeError,
    VisionSettings,
    frame_count,
    frame_indices,
    probe,
    resized_frame_size,
    sample_frames,
    smart_resize,
)


@pytest.mark.parametrize(
    ("settings", "total", "fps", "expected"),
    [
        (VisionSettings(), 48, 24.0, 4),  # 2 s at the default 2 fps
        (VisionSettings(fps=4), 150, 30.0, 20),  # 5 s at 4 fps
        (VisionSettings(fps=5), 48, 24.0, 10),
        (VisionSettings(fps=3), 48, 24.0, 6),
        (VisionSettings(fps=0.1), 48, 24.0, 4),  # raised to min_frames
        (VisionSettings(fps=30), 48, 24.0, 48),  # capped at the video's frames
        (VisionSettings(fps=30), 47, 24.0, 46),  # and kept even
        (VisionSettings(fps=8, max_frames=10), 150, 30.0, 10),
        (VisionSettings(nframes=8), 48, 24.0, 8),
        (VisionSettings(nframes=7), 48, 24.0, 8),  # rounded to even
    ],
)
def test_frame_count_follows_the_qwen_rules(settings: VisionSettings, total: int, fps: float, expected: int) -> None:
    assert frame_count(settings, total, fps) == expected


def test_too_few_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot sample 8 frames from a video of 5 frames"):
        frame_count(VisionSettings(nframes=8), 5, 24.0)


def test_indices_span_the_whole_video_evenly() -> None:
    assert frame_indices(VisionSettings(nframes=4), 48, 24.0) == [0, 16, 31, 47]
    indices = frame_indices(VisionSettings(fps=4), 150, 30.0)
    assert indices[0] == 0
    assert indices[-1] == 149
    assert indices == sorted(set(indices))


def test_smart_resize_keeps_sides_multiples_of_the_factor_within_the_budget() -> None:
    assert smart_resize(120, 160, 28, 4 * 28 * 28, 100 * 28 * 28) == (112, 168)
    height, width = smart_resize(1080, 1920, 32, 128 * 32 * 32, 256 * 32 * 32)
    assert height % 32 == width % 32 == 0
    assert height * width <= 256 * 32 * 32
    assert abs(width / height - 1920 / 1080) < 0.1
    height, width = smart_resize(30, 40, 28, 128 * 28 * 28, 768 * 28 * 28)
    assert height * width >= 128 * 28 * 28
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 4000, 28, 1, 10**9)


def test_total_pixels_bounds_each_frame_by_the_frame_count() -> None:
    settings = VisionSettings(total_pixels=8192 * 28 * 28, patch_factor=28)
    few = resized_frame_size(settings, 720, 1280, 8)
    many = resized_frame_size(settings, 720, 1280, 64)
    assert few[0] * few[1] > many[0] * many[1]
    assert many[0] * many[1] <= 8192 * 28 * 28 / 64 * 2


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="either `fps` or `nframes`"):
        VisionSettings(fps=2, nframes=8)
    with pytest.raises(ValidationError, match="min_frames"):
        VisionSettings(min_frames=10, max_frames=4)
    with pytest.raises(ValidationError, match="min_pixels"):
        VisionSettings(min_pixels=100, max_pixels=10)
    with pytest.raises(ValidationError, match="patch_factor"):
        VisionSettings.model_validate({"patch_factor": 14})


def test_settings_travel_in_a_video_part_and_back() -> None:
    settings = VisionSettings(fps=4, total_pixels=8192 * 28 * 28, max_pixels=81920, patch_factor=32)
    part = settings.video_part("/abs/clip.mp4")
    assert isinstance(part, VideoPart)
    assert part.model_dump(exclude_none=True) == {
        "type": "video",
        "video": "/abs/clip.mp4",
        "fps": 4.0,
        "min_frames": 4,
        "max_frames": 768,
        "max_pixels": 81920,
        "total_pixels": 6422528,
    }
    assert VisionSettings.from_video_part(part, 32) == settings
    published = VideoPart(video="/abs/clip.mp4", fps=1, max_pixels=81920)
    assert VisionSettings.from_video_part(published, 28) == VisionSettings(fps=1, max_pixels=81920)


@pytest.mark.parametrize("name", GOOD_VIDEOS)
def test_probe_reports_what_the_file_holds(synthetic_videos: VideoSet, name: str) -> None:
    expected = synthetic_videos.good[name]
    info = probe(expected.path)
    assert (info.num_frames, info.fps, info.width, info.height) == (
        expected.num_frames,
        expected.fps,
        expected.width,
        expected.height,
    )
    assert info.codec == expected.codec
    assert info.duration == pytest.approx(expected.duration)


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_broken_files_raise_an_error_naming_the_file(synthetic_videos: VideoSet, kind: str) -> None:
    path = synthetic_videos.broken[kind]
    with pytest.raises(VideoDecodeError, match=f"^{path}: "):
        probe(path)
    with pytest.raises(VideoDecodeError, match=f"^{path}: "):
        sample_frames(path, VisionSettings())


def test_a_missing_file_is_named() -> None:
    with pytest.raises(VideoDecodeError, match=r"absent\.mp4: no such file"):
        probe("absent.mp4")


@pytest.mark.parametrize("reader", ["decord", "pyav"])
@pytest.mark.parametrize("name", GOOD_VIDEOS)
def test_sampled_frames_are_the_chosen_ones(
    synthetic_videos: VideoSet, name: str, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if reader == "pyav":
        monkeypatch.setattr(video_module, "_open_decord", lambda path: None)
    expected = synthetic_videos.good[name]
    sampled = sample_frames(expected.path, VisionSettings(fps=3, patch_factor=32))
    assert sampled.frames.shape[1:] == (expected.height, expected.width, 3)
    assert (
        len(sampled.frames)
        == len(sampled.frame_indices)
        == frame_count(VisionSettings(fps=3), expected.num_frames, expected.fps)
    )
    for frame, index in zip(sampled.frames, sampled.frame_indices, strict=True):
        assert expected.index_from_level(frame[-1].mean()) == index % GREY_CYCLE
    assert sampled.timestamps == [i / expected.fps for i in sampled.frame_indices]
    assert sampled.video_metadata() == {
        "fps": expected.fps,
        "frames_indices": sampled.frame_indices,
        "total_num_frames": expected.num_frames,
    }
    assert sampled.resized_height % 32 == sampled.resized_width % 32 == 0
