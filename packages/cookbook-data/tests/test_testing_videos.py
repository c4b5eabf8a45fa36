from pathlib import Path
from typing import Any

import av
import pytest
from numpy.typing import NDArray

from cookbook_data.testing import BROKEN_KINDS, VideoSet
from cookbook_data.testing.videos import GOOD_VIDEOS, GREY_CYCLE

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
