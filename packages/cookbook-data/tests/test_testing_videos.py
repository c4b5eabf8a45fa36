from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from cookbook_data.testing import BROKEN_KINDS, ODD_KINDS, SyntheticVideo, VideoSet, set_mp4_rotation, write_video
from cookbook_data.testing.videos import GOOD_VIDEOS, GREY_CYCLE, HUGE_SIZE, VFR_TIMESTAMPS_MS

CODEC_NAMES = {"h264": "h264", "mpeg4": "mpeg4"}


def decode_all(path: Path) -> tuple[list[NDArray[Any]], av.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, stream


@pytest.mark.parametrize("name", GOOD_VIDEOS)
def test_good_videos_decode_with_their_declared_properties(synthetic_videos: VideoSet, name: str) -> None:
    video = synthetic_videos.good[name]
    frames, stream = decode_all(video.path)
    assert len(frames) == video.num_frames
    assert stream.average_rate == video.fps
    assert stream.codec_context.name == CODEC_NAMES[video.codec]
    assert frames[0].shape == (video.height, video.width, 3)
    assert video.duration == pytest.approx(video.num_frames / video.fps)


@pytest.mark.parametrize("name", GOOD_VIDEOS)
def test_frame_content_tells_the_frame_index_and_the_square_position(synthetic_videos: VideoSet, name: str) -> None:
    video = synthetic_videos.good[name]
    frames, _ = decode_all(video.path)
    for index, frame in enumerate(frames):
        assert video.index_from_level(frame[-1].mean()) == index % GREY_CYCLE
        x, y = video.square_top_left(index)
        inner = frame[y + 3 : y + video.square - 3, x + 3 : x + video.square - 3]
        assert inner.mean() > 235, f"frame {index}: square not at {(x, y)}"
    moved = [video.square_top_left(i) for i in range(3)]
    assert len(set(moved)) == 3


def test_the_set_covers_several_rates_sizes_lengths_and_both_codecs(synthetic_videos: VideoSet) -> None:
    good = synthetic_videos.good.values()
    assert len({v.fps for v in good}) >= 4
    assert len({(v.width, v.height) for v in good}) >= 4
    assert len({v.num_frames for v in good}) >= 3
    assert {v.codec for v in good} == {"h264", "mpeg4"}
    assert any(v.height > v.width for v in good)


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_broken_files_yield_no_decodable_video(synthetic_videos: VideoSet, kind: str) -> None:
    path = synthetic_videos.broken[kind]
    assert path.exists()
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            frames = sum(1 for _ in container.decode(streams[0])) if streams else 0
    except av.error.FFmpegError:
        frames = 0
    assert frames == 0


def test_audio_only_file_has_audio_and_no_video(synthetic_videos: VideoSet) -> None:
    with av.open(str(synthetic_videos.broken["audio_only"])) as container:
        assert len(container.streams.audio) == 1
        assert len(container.streams.video) == 0


def test_the_set_has_each_odd_kind(synthetic_videos: VideoSet) -> None:
    assert tuple(synthetic_videos.odd) == ODD_KINDS
    assert all(path.parent == synthetic_videos.root for path in synthetic_videos.odd.values())


def test_the_vfr_video_has_irregular_timestamps(synthetic_videos: VideoSet) -> None:
    with av.open(str(synthetic_videos.odd["vfr"])) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        stamps = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None)
    milliseconds = [round(float(stamp * stream.time_base) * 1000) for stamp in stamps]
    assert milliseconds == VFR_TIMESTAMPS_MS
    assert len(set(np.diff(milliseconds))) == 4
    frames, _ = decode_all(synthetic_videos.odd["vfr"])
    assert len(frames) == len(VFR_TIMESTAMPS_MS)


def test_the_rotated_video_is_stored_upright_and_shown_turned(synthetic_videos: VideoSet) -> None:
    frames, stream = decode_all(synthetic_videos.odd["rotated_90"])
    assert (stream.width, stream.height) == (160, 96)
    assert frames[0].shape == (96, 160, 3)
    with av.open(str(synthetic_videos.odd["rotated_90"])) as container:
        first = next(container.decode(video=0))
    assert first.rotation == -90  # PyAV counts counter-clockwise: shown turned 90 degrees clockwise


def test_the_huge_video_is_large_and_short(synthetic_videos: VideoSet) -> None:
    frames, stream = decode_all(synthetic_videos.odd["huge"])
    assert (stream.width, stream.height) == HUGE_SIZE
    assert frames[0].shape == (HUGE_SIZE[1], HUGE_SIZE[0], 3)
    assert 2 <= len(frames) <= 4


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_set_mp4_rotation_writes_the_display_matrix(tmp_path: Path, degrees: Any) -> None:
    video = SyntheticVideo(tmp_path / "clip.mp4", 8, 4, 64, 32, "h264")
    set_mp4_rotation(write_video(video), degrees)
    with av.open(str(video.path)) as container:
        first = next(container.decode(video=0))
    assert -first.rotation % 360 == degrees  # PyAV counts counter-clockwise
    assert (first.width, first.height) == (64, 32)


def test_set_mp4_rotation_refuses_a_file_without_one_track_header(tmp_path: Path) -> None:
    path = tmp_path / "not.mp4"
    path.write_bytes(b"no boxes here")
    with pytest.raises(ValueError, match="exactly one track header"):
        set_mp4_rotation(path, 90)


def test_write_video_checks_the_timestamp_count(tmp_path: Path) -> None:
    video = SyntheticVideo(tmp_path / "clip.mp4", 8, 4, 64, 32, "h264")
    with pytest.raises(ValueError, match="3 timestamps for 4 frames"):
        write_video(video, [0, 10, 20])
