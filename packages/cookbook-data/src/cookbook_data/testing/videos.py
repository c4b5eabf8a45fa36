"""Synthetic test videos, encoded for real with PyAV (FFmpeg), with known content.

Each good video shows a white square moving at a constant velocity over a background whose grey level
encodes the frame index, so a test can check *which* frames a sampler returned and *where* the square is,
not only how many frames came back. Broken files (truncated, empty, not a video, audio only) exercise the
error paths of every reader. Odd files (variable frame rate, rotated for display, very large) decode fine
but are what a validator sets aside.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Codec = Literal["h264", "mpeg4"]
BROKEN_KINDS = ("truncated", "empty", "not_a_video", "audio_only")
ODD_KINDS = ("vfr", "rotated_90", "huge")

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


def write_video(video: SyntheticVideo, timestamps_ms: Sequence[int] | None = None, *, faststart: bool = False) -> Path:
    """Encode ``video`` to its path with PyAV and return the path.

    ``timestamps_ms``: presentation time of each frame in milliseconds (a 1/1000 time base), for a
    variable-frame-rate file; frames are evenly spaced at ``video.fps`` without it. ``faststart``: an MP4's
    index goes before the frames (as streaming sites serve it), so that a copy cut short still opens.
    """
    import av

    video.path.parent.mkdir(parents=True, exist_ok=True)
    if timestamps_ms is not None and len(timestamps_ms) != video.num_frames:
        raise ValueError(f"{len(timestamps_ms)} timestamps for {video.num_frames} frames")
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(video.path), mode="w", options=options) as container:
        stream = container.add_stream(_ENCODER[video.codec], rate=video.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width = video.width
        stream.height = video.height
        stream.pix_fmt = "yuv420p"
        if timestamps_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if video.codec == "h264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        else:
            stream.options = {"qscale": "2"}
        for index in range(video.num_frames):
            frame = av.VideoFrame.from_ndarray(video.render(index), format="rgb24")
            if timestamps_ms is not None:
                frame.pts = timestamps_ms[index]
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return video.path


_TKHD_MATRIX = {0: 40, 1: 52}
"""Offset of the display matrix from the end of a ``tkhd`` box's type, by the box's version."""


def _box(data: bytes | bytearray, kind: bytes) -> tuple[int, int]:
    """(start, end) of the top-level MP4 box ``kind``."""
    position = 0
    while position + 8 <= len(data):
        size, found = struct.unpack(">I4s", data[position : position + 8])
        if size == 1:
            size = struct.unpack(">Q", data[position + 8 : position + 16])[0]
        elif size == 0:
            size = len(data) - position
        if found == kind:
            return position, position + size
        if size < 8:
            break
        position += size
    raise ValueError(f"no {kind.decode()} box")


def set_mp4_rotation(path: Path, degrees: Literal[0, 90, 180, 270]) -> Path:
    """Mark an MP4 with a single video track to be shown turned ``degrees`` clockwise, by writing the track
    header's display matrix (where phones mark portrait videos, and what ``ffmpeg -display_rotation``
    sets); the stored frames stay as they are. Works whatever PyAV and FFmpeg versions are installed."""
    data = bytearray(path.read_bytes())
    try:
        start, end = _box(data, b"moov")
    except ValueError:
        raise ValueError(f"{path}: expected exactly one track header (no movie box)") from None
    box = data.find(b"tkhd", start, end)
    if box < 0 or data.find(b"tkhd", box + 4, end) >= 0:
        raise ValueError(f"{path}: expected exactly one track header")
    offset = box + 4 + _TKHD_MATRIX[data[box + 4]]
    one, (cos, sin) = 1 << 16, {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    matrix = (cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30)
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))
    return path


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


VFR_TIMESTAMPS_MS = [sum((33, 50, 20, 66)[: i % 4]) + 169 * (i // 4) for i in range(32)]
"""Presentation times of the variable-frame-rate video: frames 33, 50, 20 and 66 ms apart in turn."""
HUGE_SIZE = (4096, 2176)
"""(width, height) of the very large video (larger than DCI 4K's 4096x2160)."""


@dataclass
class VideoSet:
    """The files :func:`make_video_set` wrote: good videos with ground truth, broken files by kind, and odd
    files (decodable, but variable-frame-rate, rotated or huge) by kind."""

    root: Path
    good: dict[str, SyntheticVideo] = field(default_factory=dict)
    broken: dict[str, Path] = field(default_factory=dict)
    odd: dict[str, Path] = field(default_factory=dict)


def _write_odd(root: Path) -> dict[str, Path]:
    vfr = SyntheticVideo(root / "vfr.mp4", 24, len(VFR_TIMESTAMPS_MS), 128, 96, "h264")
    rotated = SyntheticVideo(root / "rotated_90.mp4", 12, 24, 160, 96, "h264")
    huge = SyntheticVideo(root / "huge.mp4", 4, 4, *HUGE_SIZE, "h264", square=256, velocity=(300, 200))
    return {
        "vfr": write_video(vfr, VFR_TIMESTAMPS_MS),
        "rotated_90": set_mp4_rotation(write_video(rotated), 90),
        "huge": write_video(huge),
    }


def make_video_set(root: str | Path) -> VideoSet:
    """Write the default good videos, one broken file of each kind and one odd file of each kind under
    ``root``."""
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
    videos.odd = _write_odd(root)
    return videos
