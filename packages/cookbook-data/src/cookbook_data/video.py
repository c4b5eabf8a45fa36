"""Vision settings and frame sampling: the one place that decides which frames a model sees.

The rules follow ``qwen-vl-utils`` (what Cosmos Reason was trained with): the number of frames is a
multiple of 2 chosen from a target fps (or given outright) within ``min_frames``/``max_frames``; frame
indices are spread evenly from the first to the last frame; each frame is resized to multiples of the
model's patch factor (28 for Qwen2.5-VL / Reason1, 32 for Qwen3-VL / Reason2) inside a per-frame pixel range
and a budget over all frames.

The frames are the ones qwen-vl-utils' decord reader returns, bit for bit, but read faster: one PyAV pass
indexes the packets, then only the groups of pictures holding chosen frames are decoded, each from its
keyframe up to its last chosen frame (as decord seeks), on several threads when there are several groups,
skipping non-reference frames nobody asked for and converting only chosen frames to RGB. Files where that
cannot be vouched for (rotated, 10-bit, open GOPs, irregular timestamps) are read through decord itself.

Frames come back at their native resolution together with the size they must be resized to, so that the
resize happens where the image library is (the model backend), not in this light package.
"""

from __future__ import annotations

import bisect
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from cookbook_data.cpus import usable_cores
from cookbook_data.schemas import Strict, VideoPart, check_one_frame_rule

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
    max_strided_frames: int | None = Field(
        default=None,
        ge=FRAME_FACTOR,
        description="Every k-th frame from the first, k the smallest stride leaving at most this many, trimmed to "
        "an even count (the Cosmos-Reason1-7B-Reward recipe, 160); exclusive with fps and nframes.",
    )
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
        check_one_frame_rule(self)
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames ({self.min_frames}) is above max_frames ({self.max_frames})")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is above max_pixels ({self.max_pixels})")
        if self.max_pixels is not None and self.min_pixels is None and self.max_pixels < self.default_min_pixels:
            # Below the default minimum, the minimum is the maximum, and said in every video part: qwen-vl-utils
            # (what cosmos-rl reads videos with) refuses a part whose max_pixels is below its default minimum,
            # and a small video would be scaled up past max_pixels.
            self.min_pixels = self.max_pixels
        return self

    @property
    def default_min_pixels(self) -> int:
        """The smallest area of one resized frame when ``min_pixels`` is not given (qwen-vl-utils' default)."""
        return MIN_TOKENS_PER_FRAME * self.patch_factor**2

    def video_part(self, video: str) -> VideoPart:
        """The message part for ``video`` carrying these settings (the form datasets store)."""
        return VideoPart(
            video=video,
            fps=self.fps,
            nframes=self.nframes,
            max_strided_frames=self.max_strided_frames,
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
    """What a probe learns about a video without decoding more than its first frame."""

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    codec: str | None
    rotation: int = 0
    """Degrees (0, 90, 180 or 270) a player turns the stored frames clockwise for display, from the stream's
    display matrix or its ``rotate`` tag. ``width`` and ``height`` are the stored (unrotated) size."""
    variable_frame_rate: bool = False
    """Whether the timestamps of the first packets are unevenly spaced, so that a frame's index divided by
    ``fps`` is not its time."""

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
    if settings.max_strided_frames is not None:
        return len(strided_indices(settings.max_strided_frames, total_frames))
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
    """Indices of the frames to sample: evenly spread from the first frame to the last, or, with
    ``max_strided_frames``, every k-th frame from the first."""
    if settings.max_strided_frames is not None:
        return strided_indices(settings.max_strided_frames, total_frames)
    count = frame_count(settings, total_frames, video_fps)
    return [int(i) for i in np.linspace(0, total_frames - 1, count).round()]


def strided_indices(at_most: int, total_frames: int) -> list[int]:
    """Every k-th frame from the first, k = ceil(total / at_most) so at most ``at_most`` are kept, and the last
    one dropped when that leaves an odd count (frames go to the model in pairs)."""
    stride = max(1, math.ceil(total_frames / at_most))
    kept = list(range(0, total_frames, stride))
    if len(kept) < FRAME_FACTOR:
        raise ValueError(f"cannot sample {FRAME_FACTOR} frames from a video of {total_frames} frames")
    return kept[: len(kept) // FRAME_FACTOR * FRAME_FACTOR]


def smart_resize(height: int, width: int, factor: int, min_pixels: float, max_pixels: float) -> tuple[int, int]:
    """Size with both sides multiples of ``factor``, area within [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio above {MAX_ASPECT_RATIO}: {width}x{height}")
    h_bar = max(factor, _round(height, factor))
    w_bar = max(factor, _round(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        # A thin side scaled down can floor to 0; qwen-vl-utils keeps it at one patch too.
        h_bar = max(factor, _floor(height / beta, factor))
        w_bar = max(factor, _floor(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil(height * beta, factor)
        w_bar = _ceil(width * beta, factor)
    return h_bar, w_bar


def resized_frame_size(settings: VisionSettings, height: int, width: int, count: int) -> tuple[int, int]:
    """(height, width) every sampled frame is resized to, within the per-frame range and the total budget."""
    token = settings.patch_factor**2
    min_pixels = settings.min_pixels if settings.min_pixels is not None else settings.default_min_pixels
    total = settings.total_pixels if settings.total_pixels is not None else DEFAULT_TOTAL_TOKENS * token
    max_pixels = max(min(MAX_TOKENS_PER_FRAME * token, total / count * FRAME_FACTOR), int(min_pixels * 1.05))
    if settings.max_pixels is not None:
        max_pixels = min(settings.max_pixels, max_pixels)
    return smart_resize(height, width, settings.patch_factor, min_pixels, max_pixels)


def video_tokens(settings: VisionSettings, info: VideoInfo) -> int:
    """How many tokens a video becomes in the model's input: one per ``patch_factor``² pixels of each resized
    frame, counted once per pair of frames (the model takes frames in pairs). Past the frame count where the
    per-frame minimum binds, this grows with the video's length whatever ``total_pixels`` says."""
    count = frame_count(settings, info.num_frames, info.fps)
    height, width = resized_frame_size(settings, info.height, info.width, count)
    return count // FRAME_FACTOR * (height // settings.patch_factor) * (width // settings.patch_factor)


VFR_PACKETS = 240
"""How many packets :func:`probe` demuxes (without decoding) to tell a variable frame rate."""
_REORDER_MARGIN = 16
"""Latest timestamps the frame-rate check leaves out when it stops early: with B-frames, frames just before
them in display order may still be to come in decode order."""
_VFR_TOLERANCE = 0.1
"""A frame duration further than this fraction from the nominal one (plus one tick of rounding when the
nominal duration is not a whole number of ticks) makes the rate variable."""
_ROTATION_PACKETS = 32
"""How many packets :func:`probe` may decode to get a first frame and its display matrix."""

_EXACT_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuv444p"})
"""Pixel formats for which PyAV's RGB conversion is bit-identical to decord's (what qwen-vl-utils reads
with); other formats (10-bit ones among them) are read through decord itself."""
_SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4"})
"""Decoders that, told to skip non-reference frames, skip only frames that no other frame is predicted from."""


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file")


def _pyav() -> Any:
    """PyAV with FFmpeg's logging off, PyAV's own default: its log callback takes the GIL from FFmpeg's threads
    and can deadlock decoding done on several threads, as ours is. Importing torchvision turns it on (level
    ERROR), so it is turned off again before each use. Error messages are then the same in every process."""
    import av

    if av.logging.get_level() is not None:
        av.logging.set_level(None)
    return av


def _open_container(path: Path) -> Any:
    av = _pyav()

    try:
        container = av.open(str(path))
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot open as video ({error})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    return container


def _check_not_cut_short(path: Path, stream: Any) -> None:
    """Refuse a file whose container index places packets past its end. An MP4 written with its index first
    ("faststart", what streaming sites serve) and cut short in a copy or download still opens and announces all
    its frames; only reading the missing ones would fail, in training or inference rather than here. The index
    is in memory once the file is open, so the check reads no more of the file; its last entry (in decode
    order, the order muxers lay packets out in) is the one that ends furthest into the file."""
    entries = stream.index_entries
    if not len(entries) or entries[-1].pos < 0:
        return  # no index to tell by (a Matroska file keeps its index at the end: cut short, it has none)
    size = path.stat().st_size
    end = entries[-1].pos + entries[-1].size
    if end > size:
        raise VideoDecodeError(
            f"{path}: cut short: its index places frames up to byte {end}, but the file has {size} bytes "
            "(an interrupted copy or download?)"
        )


def _is_end_marker(packet: Any) -> bool:
    """PyAV ends each stream's demuxing with an empty packet that carries no data and no timestamps."""
    return bool(packet.size == 0 and packet.pts is None and packet.dts is None)


def _right_angle(degrees: float) -> int:
    return round(degrees / 90) % 4 * 90


def _tag_rotation(stream: Any) -> int | None:
    """Clockwise rotation from the ``rotate`` tag older muxers and FFmpeg versions use, if the stream has one."""
    tag = stream.metadata.get("rotate")
    try:
        return _right_angle(float(tag)) if tag else None
    except ValueError:
        return None


def _frame_rotation(frame: Any) -> int:
    """Clockwise rotation from a decoded frame's display matrix (PyAV reports it counter-clockwise)."""
    return _right_angle(-float(frame.rotation))


def _nominal_step(stream: Any) -> Fraction | None:
    """Duration of one frame in time-base ticks, from the average frame rate."""
    rate, time_base = stream.average_rate, stream.time_base
    if not rate or not time_base:
        return None
    return 1 / (Fraction(rate) * Fraction(time_base))


def _is_variable_rate(timestamps: list[int], nominal: Fraction | None, complete: bool) -> bool:
    """Whether presentation timestamps are unevenly spaced. ``complete``: they are all of the stream's."""
    ordered = sorted(timestamps)
    if not complete:
        ordered = ordered[: len(ordered) - _REORDER_MARGIN]
    if len(ordered) < 3:
        return False
    steps = np.diff(np.asarray(ordered, dtype=np.int64))
    step = float(nominal) if nominal else float(np.median(steps))
    if step <= 0:
        return True
    rounding = 0.0 if nominal is not None and nominal.denominator == 1 else 1.0
    return bool(np.abs(steps - step).max() > _VFR_TOLERANCE * step + rounding)


def _probe_pyav(path: Path) -> VideoInfo:
    container = _open_container(path)
    with container:
        stream = container.streams.video[0]
        _check_not_cut_short(path, stream)
        stream.codec_context.thread_type = "NONE"  # one frame is wanted: no threads to start, no frame delay
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        rotation = _tag_rotation(stream)
        timestamps: list[int] = []
        packets = 0
        complete = True
        for packet in container.demux(stream):
            if _is_end_marker(packet):
                continue
            packets += 1
            if rotation is None and packets <= _ROTATION_PACKETS:
                try:
                    decoded = stream.codec_context.decode(packet)
                except Exception:
                    decoded = []
                if decoded:
                    rotation = _frame_rotation(decoded[0])
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None and len(timestamps) < VFR_PACKETS:
                timestamps.append(stamp)
            elif stamp is not None:
                complete = False  # read on for the frame count (MKV, WebM store none), timestamps no longer kept
            if packets >= VFR_PACKETS and stream.frames:
                complete = False  # the container knows the frame count: no need to read on
                break
        return VideoInfo(
            path,
            stream.frames or packets,
            fps,
            stream.width,
            stream.height,
            stream.codec_context.name,
            rotation=rotation or 0,
            variable_frame_rate=_is_variable_rate(timestamps, _nominal_step(stream), complete),
        )


def probe(path: str | Path) -> VideoInfo:
    """Frame count, fps, size, codec, display rotation and frame-rate regularity of a video, from its
    container and its first packets (one frame is decoded, for the display matrix); raises
    :class:`VideoDecodeError` naming the file."""
    path = Path(path)
    _check_file(path)
    try:
        info = _probe_pyav(path)
    except VideoDecodeError:
        raise
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot open as video ({error})") from None
    if info.num_frames <= 0 or info.fps <= 0:
        raise VideoDecodeError(f"{path}: no decodable frames")
    return info


class _UseReference(Exception):
    """The direct reader cannot vouch for giving decord's frames for this file: read it through decord."""

    def __init__(self, total: int, fps: float) -> None:
        super().__init__()
        self.total = total
        self.fps = fps


def _decode_segments(timestamps: list[int], keyframes: list[bool], wanted: list[int]) -> list[tuple[int, int]] | None:
    """Inclusive ranges of packets (decode order) to decode so that the packets at positions ``wanted``
    (sorted) come out as decord returns them: each group of pictures that holds a wanted frame, from its
    keyframe up to its last wanted packet, the way decord seeks to a keyframe and decodes forward.

    None when a group has leading pictures (an open GOP: frames shown before its keyframe, predicted from
    the group before): decord, starting afresh at that keyframe, returns those frames as its decoder makes
    them out without their references, which only decord itself reproduces.
    """
    starts = [position for position, key in enumerate(keyframes) if key]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    bounds = [*starts, len(timestamps)]
    if any(min(timestamps[start:end]) != timestamps[start] for start, end in pairwise(bounds)):
        return None
    last: dict[int, int] = {}
    for position in wanted:
        last[starts[bisect.bisect_right(starts, position) - 1]] = position
    return sorted(last.items())


def _join_adjacent(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges that follow each other without a gap, as one (one decoder reads them without a flush)."""
    joined: list[tuple[int, int]] = []
    for start, end in segments:
        if joined and joined[-1][1] == start - 1:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined


def _sample_direct(path: Path, settings: VisionSettings) -> SampledVideo:
    """Decode the chosen frames with PyAV, as decord would: frames are the video's packets in presentation
    order, and only the packets they depend on are decoded (frame-threaded; non-reference frames that are
    not wanted are skipped and only wanted frames are converted to RGB)."""
    container = _open_container(path)
    with container:
        stream = container.streams.video[0]
        _check_not_cut_short(path, stream)
        timestamps: list[int] = []
        keyframes: list[bool] = []
        try:
            for packet in container.demux(stream):
                if not _is_end_marker(packet):
                    timestamps.append(packet.pts)
                    keyframes.append(packet.is_keyframe)
        except Exception as error:
            raise VideoDecodeError(f"{path}: cannot read packets ({error})") from None
        total = len(timestamps)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if total == 0 or fps <= 0:
            raise VideoDecodeError(f"{path}: no decodable frames")
        indices = frame_indices(settings, total, fps)
        if (
            not stream.average_rate
            or _tag_rotation(stream)
            or stream.codec_context.pix_fmt not in _EXACT_PIXEL_FORMATS
            or None in timestamps
            or len(set(timestamps)) != total
        ):
            raise _UseReference(total, fps)
        frames = _decode_chosen(path, container, timestamps, keyframes, indices)
        if frames is None:
            raise _UseReference(total, fps)
    resized_height, resized_width = resized_frame_size(settings, frames.shape[1], frames.shape[2], len(indices))
    return SampledVideo(frames, indices, fps, total, resized_height, resized_width)


class _Chosen:
    """The frames being collected: where each wanted timestamp goes, and which are in."""

    def __init__(self, timestamps: list[int], indices: list[int], width: int, height: int) -> None:
        order = sorted(range(len(timestamps)), key=timestamps.__getitem__)
        self.decode_positions = sorted(order[index] for index in indices)
        self.slots = {timestamps[order[index]]: slot for slot, index in enumerate(indices)}
        self.width, self.height = width, height
        self.frames = np.empty((len(indices), height, width, 3), dtype=np.uint8)
        self.filled = np.zeros(len(indices), dtype=bool)

    def keep(self, decoded: list[Any]) -> bool:
        """Store the wanted frames among ``decoded``; False when one is not as the stream promised."""
        for frame in decoded:
            slot = self.slots.get(frame.pts)
            if slot is None:
                continue
            if (
                frame.width != self.width
                or frame.height != self.height
                or frame.format.name not in _EXACT_PIXEL_FORMATS
                or _frame_rotation(frame)
            ):
                return False
            self.frames[slot] = frame.to_ndarray(format="rgb24")
            self.filled[slot] = True
        return True


def _decode_segment(
    container: Any, timestamps: list[int], positions: dict[int, int], segment: tuple[int, int], chosen: _Chosen
) -> bool:
    """Seek to the keyframe starting ``segment`` and decode its packets into ``chosen``, draining the decoder
    at its end and leaving it flushed, as decord leaves its decoder after a seek."""
    start, end = segment
    stream = container.streams.video[0]
    context = stream.codec_context
    skip_nonref = context.name in _SKIP_NONREF_CODECS
    skipping: bool | None = None
    container.seek(timestamps[start], backward=True, any_frame=False, stream=stream)
    position: int | None = None
    for packet in container.demux(stream):
        if _is_end_marker(packet):
            return False
        if position is None:
            position = positions.get(packet.pts)
            if position is None or position > start:
                return False  # the seek landed past the keyframe
        else:
            position += 1
        if packet.pts != timestamps[position]:
            return False  # the file reads differently this time
        if position < start:
            continue
        if skip_nonref:
            skip = packet.pts not in chosen.slots
            if skip != skipping:
                context.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
        if not chosen.keep(context.decode(packet)):
            return False
        if position == end:
            break
    else:
        return False
    ok = chosen.keep(context.decode(None))
    context.flush_buffers()
    return ok


_SEGMENT_SHARE = 0.75
"""Decode separate groups of pictures on separate threads only when no segment holds more than this share
of the packets to decode; otherwise one frame-threaded decoder is faster."""


def _decode_chosen(
    path: Path, container: Any, timestamps: list[int], keyframes: list[bool], indices: list[int]
) -> NDArray[np.uint8] | None:
    """The frames at ``indices`` (presentation order) as (T, H, W, 3) RGB, or None when the file does not
    decode the way its packets promise (then decord reads it).

    Groups of pictures decode independently (decord too starts afresh from a keyframe), so segments are
    shared among threads, one single-threaded decoder each, when they balance; one frame-threaded decoder
    reads them otherwise. PyAV releases the GIL while decoding.
    """
    av = _pyav()

    stream = container.streams.video[0]
    chosen = _Chosen(timestamps, indices, stream.codec_context.width, stream.codec_context.height)
    segments = _decode_segments(timestamps, keyframes, chosen.decode_positions)
    if segments is None:
        return None
    positions = {stamp: position for position, stamp in enumerate(timestamps)}
    lengths = [end - start + 1 for start, end in segments]
    cores = usable_cores()
    workers = min(cores, len(segments)) if max(lengths) <= _SEGMENT_SHARE * sum(lengths) else 1
    if workers == 1:
        segments = _join_adjacent(segments)
    pending = iter(sorted(segments, key=lambda segment: segment[0] - segment[1]))  # longest first
    lock = threading.Lock()
    failed = threading.Event()

    def work(reader: Any) -> bool:
        context = reader.streams.video[0].codec_context
        threads = max(1, cores // workers)
        context.thread_type = "FRAME" if threads > 1 else "NONE"
        context.thread_count = threads
        while not failed.is_set():
            with lock:
                segment = next(pending, None)
            if segment is None:
                return True
            if not _decode_segment(reader, timestamps, positions, segment, chosen):
                failed.set()
        return False

    def work_on_own_container() -> bool:
        with av.open(str(path)) as reader:
            return work(reader)

    try:
        if workers == 1:
            ok = work(container)
        else:
            with ThreadPoolExecutor(workers - 1) as pool:
                others = [pool.submit(work_on_own_container) for _ in range(workers - 1)]
                ok = work(container)
                ok = all([ok, *(other.result() for other in others)])
    except Exception:
        return None
    return chosen.frames if ok and bool(chosen.filled.all()) else None


def _open_decord(path: Path) -> Any | None:
    """A decord reader, or None when decord cannot open the file (PyAV then reads it)."""
    import decord

    try:
        return decord.VideoReader(str(path))
    except Exception:
        return None


def _read_pyav(path: Path, indices: list[int]) -> NDArray[np.uint8]:
    """Decode frames in order and keep the wanted ones, stopping after the last one."""
    av = _pyav()

    wanted = set(indices)
    kept: dict[int, NDArray[np.uint8]] = {}
    try:
        with av.open(str(path)) as container:
            for position, frame in enumerate(container.decode(video=0)):
                if position in wanted:
                    kept[position] = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
                if position >= indices[-1]:
                    break
    except av.error.FFmpegError as error:  # damaged frame data in a file whose header and index are intact
        raise VideoDecodeError(f"{path}: its frames do not decode ({error})") from None
    missing = wanted - kept.keys()
    if missing:
        raise VideoDecodeError(f"{path}: frames {sorted(missing)[:5]} could not be decoded (file truncated?)")
    return np.stack([kept[i] for i in indices])


def _sample_reference(path: Path, settings: VisionSettings, total: int, fps: float) -> SampledVideo:
    """Read the way qwen-vl-utils does (decord; PyAV decoding in order when decord cannot read the file)."""
    reader = _open_decord(path)
    if reader is not None:
        reader_fps = float(reader.get_avg_fps())
        total, fps = len(reader), reader_fps if math.isfinite(reader_fps) and reader_fps > 0 else fps
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


def sample_frames(path: str | Path, settings: VisionSettings) -> SampledVideo:
    """Decode only the frames ``settings`` select, exactly as qwen-vl-utils' decord reader returns them.

    One PyAV pass reads the packet index; the chosen frames are then decoded from their keyframes. Files the
    direct reader cannot vouch for (rotated, 10-bit, missing or repeated timestamps, frames that do not
    decode) are read through decord, and through plain PyAV decoding when decord cannot open them.
    """
    path = Path(path)
    _check_file(path)
    try:
        return _sample_direct(path, settings)
    except _UseReference as fallback:
        return _sample_reference(path, settings, fallback.total, fallback.fps)
