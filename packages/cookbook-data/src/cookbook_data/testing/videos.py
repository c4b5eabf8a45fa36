"""Synthetic test videos, encoded for real with PyAV (FFmpeg), with known content.

Each good video shows a white square moving at a constant velocity over a background whose grey level
encodes the frame index, so a test can check *which* frames a sampler returned and *where* the square is,
not only how many frames came back. Broken files (truncated, empty, not a video, audio only) exercise the
error paths of every reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Codec = Literal["h264", "mpeg4"]
BROKEN_KINDS = ("truncated", "empty", "not_a_video", "audio_only")

_ENCODER = {"h264": "libx264", "mpeg4": "mpeg4"}
_GREY_STEP = 16
"""Background grey level grows by this much per frame (modulo the range below): large enough to survive
lossy compression, so a decoded frame's index can be recovered from its background."""
_GREY_LOW, _GREY_SPAN = 16, 224
GREY_CYCLE = _GREY_SPAN // _GREY_STEP
"""The background level repeats every this many frames."""


@dataclass(frozen=True)
class SyntheticVideo:
    """A generated video file and the ground truth of its content."""

    path: Path
    fps: int
    num_frames: int
    width: int
    height: int
    codec: Codec
    square: int = 16
    velocity: tuple[int, int] = (3, 2)
    """Pixels per frame the square moves, (dx, dy); it wraps around inside the frame and never covers the
    last row or column, which therefore always show the background."""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.fps

    def square_top_left(self, index: int) -> tuple[int, int]:
        """(x, y) of the square's top-left corner in frame ``index``."""
        x = (4 + self.velocity[0] * index) % (self.width - self.square)
        y = (4 + self.velocity[1] * index) % (self.height - self.square)
        return x, y

    @staticmethod
    def background_level(index: int) -> int:
        """Grey level of the background in frame ``index``."""
        return _GREY_LOW + (index * _GREY_STEP) % _GREY_SPAN

    @staticmethod
    def index_from_level(level: float) -> int:
        """Frame index modulo :data:`GREY_CYCLE` recovered from a decoded background grey level."""
        return round((level - _GREY_LOW) / _GREY_STEP) % GREY_CYCLE

    def render(self, index: int) -> NDArray[np.uint8]:
        """The RGB frame ``index`` as it was before encoding, shape (height, width, 3), uint8."""
        frame = np.full((self.height, self.width, 3), self.background_level(index), dtype=np.uint8)
        x, y = self.square_top_left(index)
        frame[y : y + self.square, x : x + self.square] = 255
        return frame


def write_video(video: SyntheticVideo) -> Path:
    """Encode ``video`` to its path with PyAV and return the path."""
    import av

    video.path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video.path), mode="w") as container:
        stream = container.add_stream(_ENCODER[video.codec], rate=video.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width = video.width
        stream.height = video.height
        stream.pix_fmt = "yuv420p"
        if video.codec == "h264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        else:
            stream.options = {"qscale": "2"}
        for index in range(video.num_frames):
            frame = av.VideoFrame.from_ndarray(video.render(index), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return video.path


def _write_audio_only(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        samples = 1024
        for start in range(0, int(seconds * rate), samples):
            t = (np.arange(start, start + samples) / rate).astype(np.float32)
            tone = (0.2 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


GOOD_VIDEOS: dict[str, tuple[int, int, int, int, Codec]] = {
    # name: (fps, frames, width, height, codec)
    "h264_24fps": (24, 48, 160, 120, "h264"),
    "h264_30fps_long": (30, 150, 128, 96, "h264"),
    "h264_portrait_15fps": (15, 30, 96, 160, "h264"),
    "mpeg4_10fps": (10, 30, 112, 84, "mpeg4"),
    "mpeg4_8fps": (8, 24, 176, 144, "mpeg4"),
}
"""The default set: several frame rates, sizes, lengths and both codecs."""


@dataclass
class VideoSet:
    """The files :func:`make_video_set` wrote: good videos with ground truth, and broken files by kind."""

    root: Path
    good: dict[str, SyntheticVideo] = field(default_factory=dict)
    broken: dict[str, Path] = field(default_factory=dict)


def make_video_set(root: str | Path) -> VideoSet:
    """Write the default good videos and one broken file of each kind under ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    videos = VideoSet(root=root)
    for name, (fps, frames, width, height, codec) in GOOD_VIDEOS.items():
        video = SyntheticVideo(root / f"{name}.mp4", fps, frames, width, height, codec)
        write_video(video)
        videos.good[name] = video

    source = videos.good["h264_24fps"].path.read_bytes()
    truncated = root / "truncated.mp4"
    truncated.write_bytes(source[: len(source) * 2 // 5])
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    not_a_video = root / "not_a_video.mp4"
    not_a_video.write_text("this file is text, not a video\n")
    videos.broken = {
        "truncated": truncated,
        "empty": empty,
        "not_a_video": not_a_video,
        "audio_only": _write_audio_only(root / "audio_only.mp4"),
    }
    return videos
