import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from cookbook_data import video as video_module
from cookbook_data.schemas import VideoPart
from cookbook_data.testing import BROKEN_KINDS, ODD_KINDS, SyntheticVideo, VideoSet
from cookbook_data.testing.videos import GOOD_VIDEOS, GREY_CYCLE, HUGE_SIZE, write_video
from cookbook_data.video import (
    SampledVideo,
    VideoDecodeError,
    VisionSettings,
    frame_count,
    frame_indices,
    probe,
    resized_frame_size,
    sample_frames,
    smart_resize,
    video_tokens,
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


def test_strided_sampling_keeps_every_kth_frame_at_most_the_cap_and_an_even_count() -> None:
    strided = VisionSettings(max_strided_frames=160)
    assert frame_indices(strided, 120, 24.0) == list(range(120))  # 5 s at 24 fps: every frame
    assert frame_indices(strided, 480, 30.0) == list(range(0, 480, 3))  # k = 3: 160 frames
    assert frame_indices(strided, 481, 30.0) == list(range(0, 481, 4))[:120]  # k = 4: 121 frames, last dropped
    assert frame_indices(VisionSettings(max_strided_frames=4), 9, 24.0) == [0, 3]  # k = 3: 0, 3, 6 -> even
    assert frame_count(strided, 481, 30.0) == 120
    with pytest.raises(ValueError, match="cannot sample 2 frames from a video of 1 frames"):
        frame_indices(strided, 1, 24.0)
    with pytest.raises(ValidationError, match="not nframes and max_strided_frames"):
        VisionSettings(nframes=8, max_strided_frames=160)


def test_strided_settings_travel_in_the_video_part(synthetic_videos: VideoSet) -> None:
    settings = VisionSettings(max_strided_frames=8, total_pixels=64 * 28 * 28)
    part = settings.video_part("/a.mp4")
    assert part.max_strided_frames == 8
    assert VisionSettings.from_video_part(part, 28) == settings
    video = synthetic_videos.good["h264_24fps"]
    sampled = sample_frames(video.path, settings)
    assert sampled.frame_indices == frame_indices(settings, video.num_frames, video.fps)
    assert len(sampled.frame_indices) <= 8
    assert np.array_equal(sampled.frames, decord_frames(video.path, sampled.frame_indices))


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


@pytest.mark.parametrize(
    ("height", "width"),
    [(40, 5000), (5000, 40)],  # scaled down to the budget, the thin side floors below a patch
)
def test_a_thin_frame_keeps_at_least_one_patch_on_each_side(height: int, width: int) -> None:
    settings = VisionSettings(fps=4, max_pixels=81920)
    factor = settings.patch_factor
    sides = resized_frame_size(settings, height, width, 8)
    assert all(side >= factor and side % factor == 0 for side in sides)
    assert max(sides) <= math.floor(max(height, width) / math.sqrt(height * width / 81920) / factor) * factor


def test_total_pixels_bounds_each_frame_by_the_frame_count() -> None:
    settings = VisionSettings(total_pixels=8192 * 28 * 28, patch_factor=28)
    few = resized_frame_size(settings, 720, 1280, 8)
    many = resized_frame_size(settings, 720, 1280, 64)
    assert few[0] * few[1] > many[0] * many[1]
    assert many[0] * many[1] <= 8192 * 28 * 28 / 64 * 2


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="not fps and nframes"):
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
        "min_pixels": 81920,  # below the default minimum: the maximum is the minimum too
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
    assert info.rotation == 0
    assert info.variable_frame_rate is False


def test_probe_tells_the_odd_videos_apart(synthetic_videos: VideoSet) -> None:
    vfr, rotated, huge = (probe(synthetic_videos.odd[kind]) for kind in ODD_KINDS)
    assert (vfr.variable_frame_rate, vfr.rotation) == (True, 0)
    assert (rotated.variable_frame_rate, rotated.rotation) == (False, 90)
    assert (rotated.width, rotated.height) == (160, 96)  # the stored size; shown 96 wide and 160 high
    assert (huge.variable_frame_rate, huge.rotation) == (False, 0)
    assert (huge.width, huge.height) == HUGE_SIZE


def test_a_long_constant_rate_mkv_with_b_frames_is_not_variable_rate(tmp_path: Path) -> None:
    import av

    path = tmp_path / "cfr.mkv"
    clip = SyntheticVideo(path, fps=30, num_frames=300, width=128, height=96, codec="h264", velocity=(1, 1))
    with av.open(str(path), mode="w") as container:  # x264's default preset: B-frames, stored in decode order
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for index in range(clip.num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(clip.render(index), format="rgb24")))
        container.mux(stream.encode(None))

    info = probe(path)

    assert info.num_frames == 300  # MKV stores no frame count: every packet was read
    assert info.variable_frame_rate is False


TICKS_30FPS_MS = [round(i * 1000 / 29.97) for i in range(300)]
"""29.97 fps in a 1/1000 time base: frames 33 or 34 ticks apart, a constant rate all the same."""


@pytest.mark.parametrize(
    ("timestamps", "nominal", "complete", "variable"),
    [
        (TICKS_30FPS_MS, Fraction(1000 * 1001, 30000), True, False),
        (TICKS_30FPS_MS, None, True, False),
        ([i * 512 for i in range(50)], Fraction(512), True, False),
        ([0, 1, 2, 4, 5, 6], Fraction(1), True, True),  # one frame missing in a 1/fps time base
        ([0, 33, 83, 103, 169, 202, 252], None, True, True),
        ([0, 0, 512, 1024], Fraction(512), True, True),  # repeated timestamps
        ([0, 40], Fraction(40), True, False),  # too few to tell
    ],
)
def test_variable_rate_check(timestamps: list[int], nominal: Fraction | None, complete: bool, variable: bool) -> None:
    assert video_module._is_variable_rate(timestamps, nominal, complete) is variable


def test_variable_rate_check_ignores_frames_still_to_come_in_decode_order() -> None:
    # B-frames: the first 40 packets in decode order hold frame 40 but not yet frames 38 and 39.
    decode_order = [*range(38), 40]
    stamps = [i * 512 for i in decode_order]
    assert video_module._is_variable_rate(stamps, Fraction(512), complete=False) is False
    assert video_module._is_variable_rate(stamps, Fraction(512), complete=True) is True


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_broken_files_raise_an_error_naming_the_file(synthetic_videos: VideoSet, kind: str) -> None:
    path = synthetic_videos.broken[kind]
    with pytest.raises(VideoDecodeError, match=f"^{path}: "):
        probe(path)
    with pytest.raises(VideoDecodeError, match=f"^{path}: "):
        sample_frames(path, VisionSettings())


def test_a_faststart_file_cut_short_is_refused_though_its_header_counts_every_frame(
    faststart_videos: tuple[SyntheticVideo, Path],
) -> None:
    import av

    whole, cut = faststart_videos
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == whole.num_frames  # what the header of the cut copy says
    assert probe(whole.path).num_frames == whole.num_frames
    sampled = sample_frames(whole.path, VisionSettings(nframes=8))
    levels = [whole.index_from_level(frame[-1].mean()) for frame in sampled.frames]
    assert levels == [index % GREY_CYCLE for index in sampled.frame_indices]

    cut_short = f"^{cut}: cut short: its index places frames up to byte {whole.path.stat().st_size}, "
    with pytest.raises(VideoDecodeError, match=cut_short):
        probe(cut)
    with pytest.raises(VideoDecodeError, match=cut_short):
        sample_frames(cut, VisionSettings(nframes=8))


def test_damaged_frame_data_in_an_intact_file_is_named(tmp_path: Path) -> None:
    whole = write_video(SyntheticVideo(tmp_path / "whole.mp4", 24, 96, 160, 120, "h264"))
    data = bytearray(whole.read_bytes())
    noise = random.Random(0)
    for position in range(len(data) // 3, 2 * len(data) // 3, 3):  # the middle third of the frame data
        data[position] = noise.randrange(256)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    assert probe(damaged).num_frames == 96  # header and index intact
    with pytest.raises(VideoDecodeError, match=f"^{damaged}: its frames do not decode"):
        sample_frames(damaged, VisionSettings(nframes=8))


def test_a_missing_file_is_named() -> None:
    with pytest.raises(VideoDecodeError, match=r"absent\.mp4: no such file"):
        probe("absent.mp4")


def force_reader(monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    """Make sample_frames read with ``reader``: the direct PyAV reader (failing the test if it hands the
    file over), decord, or plain in-order PyAV decoding."""
    if reader == "direct":

        def refuse(path: Path, *args: Any) -> None:
            raise AssertionError(f"{path}: the direct reader handed the file over")

        monkeypatch.setattr(video_module, "_sample_reference", refuse)
        return

    def hand_over(path: Path, settings: VisionSettings) -> None:
        info = probe(path)
        raise video_module._UseReference(info.num_frames, info.fps)

    monkeypatch.setattr(video_module, "_sample_direct", hand_over)
    if reader == "pyav":
        monkeypatch.setattr(video_module, "_open_decord", lambda path: None)


@pytest.mark.parametrize("reader", ["direct", "decord", "pyav"])
@pytest.mark.parametrize("name", GOOD_VIDEOS)
def test_sampled_frames_are_the_chosen_ones(
    synthetic_videos: VideoSet, name: str, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    force_reader(monkeypatch, reader)
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


def decord_frames(path: Path, indices: list[int]) -> np.ndarray[Any, Any]:
    import decord

    frames: np.ndarray[Any, Any] = decord.VideoReader(str(path)).get_batch(indices).asnumpy()
    return frames


SAMPLINGS = [VisionSettings(), VisionSettings(fps=16), VisionSettings(nframes=8), VisionSettings(fps=1)]


@pytest.mark.parametrize("parallel", [False, True], ids=["one_decoder", "segments_in_parallel"])
@pytest.mark.parametrize("name", [*GOOD_VIDEOS, "vfr", "huge"])
def test_direct_reading_returns_decords_frames(
    synthetic_videos: VideoSet, name: str, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    force_reader(monkeypatch, "direct")
    monkeypatch.setattr(video_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(video_module, "_SEGMENT_SHARE", 1.0 if parallel else 0.0)
    path = synthetic_videos.good[name].path if name in GOOD_VIDEOS else synthetic_videos.odd[name]
    for settings in SAMPLINGS if name != "huge" else SAMPLINGS[:1]:
        sampled = sample_frames(path, settings)
        assert np.array_equal(sampled.frames, decord_frames(path, sampled.frame_indices))


def write_b_frame_video(path: Path, keyint: int, open_gop: bool = False) -> Path:
    """H.264 with B-frames as x264 makes them (a reference B in each run of three), in short GOPs."""
    import av

    video = SyntheticVideo(path, 24, 72, 160, 120, "h264")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=video.fps)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20", "g": str(keyint), "bf": "3"}
        if open_gop:
            stream.options = {**stream.options, "x264-params": "open-gop=1:scenecut=0"}
        for index in range(video.num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(video.render(index), format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("parallel", [False, True], ids=["one_decoder", "segments_in_parallel"])
def test_direct_reading_of_b_frames_in_short_gops(
    tmp_path: Path, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_b_frame_video(tmp_path / "b_frames.mp4", keyint=12)
    force_reader(monkeypatch, "direct")
    monkeypatch.setattr(video_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(video_module, "_SEGMENT_SHARE", 1.0 if parallel else 0.0)
    for settings in [*SAMPLINGS, VisionSettings(nframes=2), VisionSettings(fps=24)]:
        sampled = sample_frames(path, settings)
        assert np.array_equal(sampled.frames, decord_frames(path, sampled.frame_indices))
        for frame, index in zip(sampled.frames, sampled.frame_indices, strict=True):
            assert SyntheticVideo.index_from_level(frame[-1].mean()) == index % GREY_CYCLE


def spy_on_reference(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths sample_frames hands over to decord from now on."""
    handed_over: list[Path] = []
    reference = video_module._sample_reference

    def spy(path: Path, *args: Any) -> SampledVideo:
        handed_over.append(path)
        return reference(path, *args)

    monkeypatch.setattr(video_module, "_sample_reference", spy)
    return handed_over


def test_open_gops_are_read_through_decord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_b_frame_video(tmp_path / "open_gops.mp4", keyint=12, open_gop=True)
    handed_over = spy_on_reference(monkeypatch)
    sampled = sample_frames(path, VisionSettings(fps=4))
    assert handed_over == [path]
    assert np.array_equal(sampled.frames, decord_frames(path, sampled.frame_indices))


def test_decode_segments_start_at_keyframes_and_stop_at_the_last_wanted_frame() -> None:
    # Decode order of closed GOPs of 6 with B-frames: I0 P3 B1 B2 P5 B4 | I6 P9 B7 B8 P11 B10 | I12 ...
    pattern = [0, 3, 1, 2, 5, 4]
    stamps = [gop * 6 + offset for gop in range(3) for offset in pattern]
    keys = [position % 6 == 0 for position in range(18)]
    position_of = {stamp: position for position, stamp in enumerate(stamps)}
    wanted = sorted(position_of[frame] for frame in [1, 13, 17])
    assert video_module._decode_segments(stamps, keys, wanted) == [(0, 2), (12, 16)]
    assert video_module._join_adjacent([(0, 5), (6, 8), (12, 16)]) == [(0, 8), (12, 16)]
    # An open GOP (B-frames after I6 shown before it): decord's own reading is needed.
    open_stamps = [0, 3, 1, 2, 8, 6, 7, 4, 5]
    open_keys = [True, False, False, False, False, True, False, False, False]
    assert video_module._decode_segments(open_stamps, open_keys, [2, 7]) is None


def test_rotated_videos_come_turned_as_decord_turns_them(synthetic_videos: VideoSet) -> None:
    path = synthetic_videos.odd["rotated_90"]
    sampled = sample_frames(path, VisionSettings(nframes=4))
    assert sampled.frames.shape == (4, 160, 96, 3)
    assert np.array_equal(sampled.frames, decord_frames(path, sampled.frame_indices))


def test_ten_bit_videos_are_read_through_decord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    path = tmp_path / "ten_bit.mp4"
    video = SyntheticVideo(path, 8, 16, 64, 48, "h264")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=video.fps)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p10le"
        for index in range(video.num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(video.render(index), format="rgb24")))
        container.mux(stream.encode(None))
    handed_over = spy_on_reference(monkeypatch)
    sampled = sample_frames(path, VisionSettings(nframes=4))
    assert handed_over == [path]
    assert np.array_equal(sampled.frames, decord_frames(path, sampled.frame_indices))


def test_direct_reading_of_matroska(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frame rate and frame count come from the container the way decord's older FFmpeg reads them."""
    import av

    video = SyntheticVideo(tmp_path / "clip.mkv", 30, 45, 160, 120, "h264")
    with av.open(str(video.path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": "10"}
        for index in range(video.num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(video.render(index), format="rgb24")))
        container.mux(stream.encode(None))
    force_reader(monkeypatch, "direct")
    sampled = sample_frames(video.path, VisionSettings(fps=4))
    assert sampled.total_frames == 45
    assert sampled.source_fps == pytest.approx(30000 / 1001)
    assert np.array_equal(sampled.frames, decord_frames(video.path, sampled.frame_indices))


@pytest.mark.parametrize(("patch", "max_pixels"), [(28, 81920), (32, 131071)])
def test_a_max_pixels_below_the_default_min_pixels_is_the_minimum_too(patch: int, max_pixels: int) -> None:
    settings = VisionSettings(fps=1, max_pixels=max_pixels, patch_factor=patch)

    assert settings.min_pixels == max_pixels  # written into the video part, so qwen-vl-utils reads the same
    assert settings.video_part("/a.mp4").min_pixels == max_pixels
    height, width = resized_frame_size(settings, 96, 128, 8)  # a small video is scaled up to max_pixels only
    assert abs(height * width - max_pixels) <= 2 * patch * max(height, width)
    assert VisionSettings(max_pixels=max_pixels, min_pixels=1000, patch_factor=patch).min_pixels == 1000


@pytest.mark.parametrize(
    "settings",
    [
        VisionSettings(fps=4),
        VisionSettings(nframes=6, max_pixels=64 * 28 * 28),
        VisionSettings(max_strided_frames=8, total_pixels=256 * 32 * 32, patch_factor=32),
    ],
)
def test_video_tokens_count_what_the_sampler_gives_the_model(
    synthetic_videos: VideoSet, settings: VisionSettings
) -> None:
    for clip in synthetic_videos.good.values():
        sampled = sample_frames(clip.path, settings)
        grids = len(sampled.frame_indices) // 2
        patch = settings.patch_factor
        expected = grids * (sampled.resized_height // patch) * (sampled.resized_width // patch)
        assert video_tokens(settings, probe(clip.path)) == expected, clip.path.name
