"""Vision settings and frame sampling: the one place that decides which frames a model sees.

The rules follow ``qwen-vl-utils`` (what Cosmos Reason was trained with): the number of frames is a
multiple of 2 chosen from a target fps (or given outright) within ``min_frames``/``max_frames``; frame
indices are spread evenly from the first to the last frame; each frame is resized to multiples of the
model's patch factor (28 for Qwen2.5-VL / Reason1, 32 for Qwen3-VL / Reason2) inside a per-frame pixel range
and a budget over all frames. Only the chosen frames are decoded.

Frames come back at their native resolution together with the size they must be resized to, so that the
resize happens where the image library is (the model backend), not in this light package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from cookbook_data.schemas import Strict, VideoPart

FRAME_FACTOR = 2
"""Frame counts are multiples of the temporal patch size."""
DEFAULT_FPS = 2.0
MIN_TOKENS_PER_FRAME = 128
MAX_TOKENS_PER_FRAME = 768
DEFAULT_TOTAL_TOKENS = 128000 * 0.9
"""qwen-vl-utils' defaults, in visual tokens (one token = patch_factor x patch_factor pixels)."""
MAX_ASPECT_RATIO = 200


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded; the message names the file and the reason."""


class VisionSettings(Strict):
    """How a video is turned into model input. Recorded with every dataset row and prediction so training
    and evaluation see the same frames."""

    fps: float | None = Field(
        default=None,
        gt=0,
        description=f"Frames per second to sample (default {DEFAULT_FPS} when no nframes).",
    )
    nframes: int | None = Field(default=None, gt=0, description="Exact number of frames (rounded to even).")
    min_frames: int = Field(default=4, gt=0, description="Fewest frames when sampling by fps.")
    max_frames: int = Field(default=768, gt=0, description="Most frames when sampling by fps.")
    min_pixels: int | None = Field(default=None, gt=0, description="Smallest area of one resized frame.")
    max_pixels: int | None = Field(default=None, gt=0, description="Largest area of one resized frame.")
    total_pixels: int | None = Field(
        default=None, gt=0, description="Pixel budget over all frames; bounds max_pixels by frame count."
    )
    patch_factor: Literal[28, 32] = Field(
        default=28, description="Resized sides are multiples of this: 28 for Reason1, 32 for Reason2."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.fps is not None and self.nframes is not None:
            raise ValueError("give either `fps` or `nframes`, not both")
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames ({self.min_frames}) is above max_frames ({self.max_frames})")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is above max_pixels ({self.max_pixels})")
        return self

    def video_part(self, video: str) -> VideoPart:
        """The message part for ``video`` carrying these settings (the form datasets store)."""
        return VideoPart(
            video=video,
            fps=self.fps,
            nframes=self.nframes,
            min_frames=self.min_frames,
            max_frames=self.max_frames,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            total_pixels=self.total_pixels,
        )

    @classmethod
    def from_video_part(cls, part: VideoPart, patch_factor: Literal[28, 32]) -> VisionSettings:
        """Settings stored in a message part, for a model with ``patch_factor``."""
        stored = part.model_dump(exclude={"type", "video"}, exclude_none=True)
        return cls(patch_factor=patch_factor, **stored)


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learns about a video without decoding it."""

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    codec: str | None

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


@dataclass(frozen=True)
class SampledVideo:
    """Frames chosen by :func:`sample_frames`, with what a model needs to place them in time."""

    frames: NDArray[np.uint8]
    """(T, H, W, 3) RGB at the video's native resolution."""
    frame_indices: list[int]
    source_fps: float
    total_frames: int
    resized_height: int
    resized_width: int

    @property
    def timestamps(self) -> list[float]:
        """Seconds from the start of the video of each sampled frame."""
        return [index / self.source_fps for index in self.frame_indices]

    @property
    def sample_fps(self) -> float:
        """Effective frames per second of the sample (what Qwen2.5-VL's temporal ids use)."""
        return len(self.frame_indices) / self.total_frames * self.source_fps

    def video_metadata(self) -> dict[str, Any]:
        """The ``video_metadata`` a Qwen3-VL processor needs for pre-sampled frames (for timestamps)."""
        return {
            "fps": self.source_fps,
            "frames_indices": self.frame_indices,
            "total_num_frames": self.total_frames,
        }


def _round(value: float, factor: int) -> int:
    return round(value / factor) * factor


def _ceil(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def _floor(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor


def frame_count(settings: VisionSettings, total_frames: int, video_fps: float) -> int:
    """How many frames to sample: a multiple of 2 within [2, total_frames]."""
    if settings.nframes is not None:
        count = _round(settings.nframes, FRAME_FACTOR)
    else:
        fps = settings.fps if settings.fps is not None else DEFAULT_FPS
        low = _ceil(settings.min_frames, FRAME_FACTOR)
        high = _floor(min(settings.max_frames, total_frames), FRAME_FACTOR)
        wanted = total_frames / video_fps * fps
        count = _floor(min(max(wanted, low), high, total_frames), FRAME_FACTOR)
    if not FRAME_FACTOR <= count <= total_frames:
        raise ValueError(f"cannot sample {count} frames from a video of {total_frames} frames")
    return count


def frame_indices(settings: VisionSettings, total_frames: int, video_fps: float) -> list[int]:
    """Indices of the frames to sample, evenly spread from the first frame to the last."""
    count = frame_count(settings, total_frames, video_fps)
    return [int(i) for i in np.linspace(0, total_frames - 1, count).round()]


def smart_resize(height: int, width: int, factor: int, min_pixels: float, max_pixels: float) -> tuple[int, int]:
    """Size with both sides multiples of ``factor``, area within [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio above {MAX_ASPECT_RATIO}: {width}x{height}")
    h_bar = max(factor, _round(height, factor))
    w_bar = max(factor, _round(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = _floor(height / beta, factor)
        w_bar = _floor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil(height * beta, factor)
        w_bar = _ceil(width * beta, factor)
    return h_bar, w_bar


def resized_frame_size(settings: VisionSettings, height: int, width: int, count: int) -> tuple[int, int]:
    """(height, width) every sampled frame is resized to, within the per-frame range and the total budget."""
    token = settings.patch_factor**2
    min_pixels = settings.min_pixels if settings.min_pixels is not None else MIN_TOKENS_PER_FRAME * token
    total = settings.total_pixels if settings.total_pixels is not None else DEFAULT_TOTAL_TOKENS * token
    max_pixels = max(min(MAX_TOKENS_PER_FRAME * token, total / count * FRAME_FACTOR), int(min_pixels * 1.05))
    if settings.max_pixels is not None:
        max_pixels = min(settings.max_pixels, max_pixels)
    return smart_resize(height, width, settings.patch_factor, min_pixels, max_pixels)


def _open_decord(path: Path) -> Any | None:
    """A decord reader, or None when decord cannot open the file (PyAV then reads it)."""
    import decord

    try:
        return decord.VideoReader(str(path), num_threads=1)
    except Exception:
        return None


def _probe_pyav(path: Path) -> VideoInfo:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        frames = stream.frames or sum(1 for _ in container.decode(stream))
        return VideoInfo(path, frames, fps, stream.width, stream.height, stream.codec_context.name)


def probe(path: str | Path) -> VideoInfo:
    """Frame count, fps, size and codec of a video; raises :class:`VideoDecodeError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file")
    try:
        info = _probe_pyav(path)
    except VideoDecodeError:
        raise
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot open as video ({error})") from None
    if info.num_frames <= 0 or info.fps <= 0:
        raise VideoDecodeError(f"{path}: no decodable frames")
    return info


def _read_pyav(path: Path, indices: list[int]) -> NDArray[np.uint8]:
    """Decode frames in order and keep the wanted ones, stopping after the last one."""
    import av

    wanted = set(indices)
    kept: dict[int, NDArray[np.uint8]] = {}
    with av.open(str(path)) as container:
        for position, frame in enumerate(container.decode(video=0)):
            if position in wanted:
                kept[position] = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            if position >= indices[-1]:
                break
    missing = wanted - kept.keys()
    if missing:
        raise VideoDecodeError(f"{path}: frames {sorted(missing)[:5]} could not be decoded (file truncated?)")
    return np.stack([kept[i] for i in indices])


def sample_frames(path: str | Path, settings: VisionSettings) -> SampledVideo:
    """Decode only the frames ``settings`` select (decord; PyAV when decord cannot read the file)."""
    path = Path(path)
    info = probe(path)
    reader = _open_decord(path)
    total, fps = (len(reader), float(reader.get_avg_fps())) if reader is not None else (info.num_frames, info.fps)
    indices = frame_indices(settings, total, fps)
    frames: NDArray[np.uint8] | None = None
    if reader is not None:
        try:
            frames = reader.get_batch(indices).asnumpy()
        except Exception:
            frames = None
    if frames is None:
        frames = _read_pyav(path, indices)
    height, width = frames.shape[1:3]
    resized_height, resized_width = resized_frame_size(settings, height, width, len(indices))
    return SampledVideo(frames, indices, fps, total, resized_height, resized_width)
