"""FID and FVD between a set of real videos and a set of generated ones.

Each set is a VideoSample JSONL manifest, a folder of videos or one video file. Features are extracted
video by video through :func:`cookbook_data.jobs.run_job`, so a rerun resumes, a video that cannot be decoded
fails alone (a line in ``errors-<set>.jsonl``) and the run goes on; each video's features are cached as
``features/<set>/<id>.npy`` under the output folder, listed in ``features-<set>.jsonl`` with the protocol's
fingerprint (a rerun with another protocol or other weights refuses to mix them). The result goes to
``fid.json`` / ``fvd.json`` with everything needed to read it: value, feature vectors and videos per set,
failures by reason, feature dimension, protocol, extractor and weights id, and whether it is comparable to
published numbers.

Where it runs (``engine``): one job, two engines. Each video is decoded and its frames or clips sampled by the
job's ``prepare`` step (worker threads here; CPU tasks on a Ray cluster), then embedded in batches by an
extractor built where the batches run (once in this process; once per actor on Ray, each with its GPU). The
batch function writes each video's ``.npy`` (temporary file, then rename) and returns its record; this process
writes the records and errors, and reads the ``.npy`` files back for the statistics. On a cluster of several
machines the output folder must therefore be on storage every node reaches at the same path (the videos and
weights too); a node that cannot write there fails its videos as ``output_not_writable``.

Protocols (recorded in the result):

- **FID**: ``frames_per_video`` frames (default 8) per video, evenly spaced from the first frame to the last
  (:func:`cookbook_data.video.sample_frames`, which needs an even count); a video with fewer frames gives
  all of its frames (rounded down to an even count) and one with fewer than 2 fails as ``too_short``. Each
  frame: uint8 RGB -> [0, 1] -> 299x299 bilinear (as pytorch-fid: not antialiased) -> [-1, 1] -> InceptionV3
  pool3 (2048-d).
  Every frame is one sample, so a video shorter than asked weighs less.
- **FVD**: ``clips_per_video`` clips (default 1) of ``clip_length`` consecutive frames (default 16), the
  first starting at frame 0 and the others evenly spaced up to the last full clip, decoded in order with
  PyAV; each frame resized (not cropped) to 224x224 the same way; I3D Kinetics-400 logits (400-d) per clip.
  A video shorter than one clip is padded by repeating its last frame (``short_videos="pad"``, the count is
  recorded per video and per set) or fails as ``too_short`` (``"skip"``).

Sets of different sizes are fine: each set's mean and covariance are estimated on its own samples. With
fewer samples than feature dimensions (2048 for FID, 400 for FVD) the covariance is singular and the run
stops with an error unless ``shrinkage`` is set (the result then says it is not comparable).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, JsonValue, field_validator

from cookbook_data.download import VIDEO_SUFFIXES
from cookbook_data.engines import EngineConfig, LocalEngineConfig
from cookbook_data.jobs import ItemFailure, Job, Process, run_job
from cookbook_data.records import read_records
from cookbook_data.schemas import Record, Strict, VideoSample
from cookbook_eval import _outputs
from cookbook_eval.features import ExtractorSettings, I3DFeatures, InceptionFeatures, WeightsError, weights_id
from cookbook_eval.frechet import GaussianStats, RankDeficientError, frechet_distance_between, gaussian_stats

if TYPE_CHECKING:
    from cookbook_eval.features import Extractor

SetName = Literal["real", "generated"]
FID_IMAGE_SIZE = 299
FVD_IMAGE_SIZE = 224
FVD_CLIP_LENGTH = 16
PUBLISHED_RESIZE = "bilinear"
"""How the published FID (TTUR, pytorch-fid) and FVD code resize frames: bilinear, not antialiased."""
RANDOM_WEIGHTS_NOTE = (
    "random weights: the architecture with seeded random parameters; the value only compares sets within "
    "this run and is not comparable to published numbers"
)


class _FrechetJobConfig(Strict):
    """What FID and FVD runs share: the two sets, the weights, the output folder and the estimator."""

    real: Path = Field(description="Reference videos: a VideoSample JSONL manifest, a folder of videos, or one file.")
    generated: Path = Field(description="Generated videos, in the same forms as `real`.")
    out: Path = Field(description="Folder for cached features, per-video errors, the result and the resolved config.")
    weights: str = Field(
        description=(
            "Extractor weights: a state_dict file, hf://owner/name/path/to/file for a Hugging Face hub file, or "
            "'random' for seeded random weights (pipeline checks only: marked not comparable)."
        )
    )
    shrinkage: Annotated[float, Field(gt=0, le=1)] | Literal["ledoit-wolf"] | None = Field(
        default=None,
        description=(
            "Covariance estimate when a set has fewer samples than feature dimensions: 'ledoit-wolf' or a fixed "
            "intensity in (0, 1] toward the scaled identity. None refuses such sets. Not comparable when set."
        ),
    )
    image_size: int | None = Field(
        default=None, ge=32, description="Side of the square network input (default 299 for FID, 224 for FVD)."
    )
    antialias: bool = Field(
        default=False,
        description=(
            "Antialias the bilinear resize when shrinking frames: a cleaner input for large shrinks, but the "
            "published FID and FVD code resize without it, so the result is then not comparable."
        ),
    )
    seed: int = Field(default=0, description="Seed of the random weights (only with weights='random').")
    device: str | None = Field(
        default=None, description="Torch device (default: cuda where the extractor runs and has it, else cpu)."
    )
    batch_size: int = Field(default=4, ge=1, description="Videos embedded together.")
    workers: int = Field(
        default=2, ge=1, description="Batches in flight (local engine; decoding overlaps the network)."
    )
    engine: EngineConfig = Field(
        default_factory=LocalEngineConfig,
        description=(
            "Where features are extracted: local, or a Ray cluster (decoding in CPU tasks, the network in a pool of "
            "actors). The actors write the features into `out`: on several machines it must be shared storage, "
            "at the same path on every node."
        ),
    )


class FIDConfig(_FrechetJobConfig):
    """What `cookbook-eval fid` computes: Fréchet Inception Distance over frames of two video sets."""

    frames_per_video: int = Field(
        default=8, ge=2, description="Frames per video, evenly spaced from first to last; even (sampler's rule)."
    )

    @field_validator("frames_per_video")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"frames_per_video must be even (frames are sampled in pairs), got {value}")
        return value


class FVDConfig(_FrechetJobConfig):
    """What `cookbook-eval fvd` computes: Fréchet Video Distance over clips of two video sets."""

    clip_length: int = Field(default=FVD_CLIP_LENGTH, ge=2, description="Consecutive frames per clip.")
    clips_per_video: int = Field(
        default=1, ge=1, description="Clips per video: the first at frame 0, others evenly spaced to the end."
    )
    short_videos: Literal["pad", "skip"] = Field(
        default="pad",
        description="Videos shorter than a clip: 'pad' repeats the last frame (counted), 'skip' fails them.",
    )


class FIDProtocol(Strict):
    """How frames were chosen and prepared for FID."""

    frames_per_video: int = Field(description="Frames asked per video.")
    sampling: str = Field(
        default="evenly spaced from first to last frame (cookbook_data.video.sample_frames); shorter videos give "
        "all their frames (even count)",
        description="Which frames.",
    )
    image_size: int = Field(description="Frames resized to image_size x image_size.")
    resize: str = Field(description="Interpolation of the resize.")
    input_scaling: str = Field(
        default="uint8 RGB / 255 -> [0, 1] -> x * 2 - 1 -> [-1, 1]", description="Values the network receives."
    )
    architecture: str = Field(description="Network and variant.")


class FVDProtocol(Strict):
    """How clips were chosen and prepared for FVD."""

    clip_length: int = Field(description="Consecutive frames per clip.")
    clips_per_video: int = Field(description="Clips asked per video.")
    sampling: str = Field(
        default="consecutive frames decoded in order; first clip at frame 0, others evenly spaced to the last "
        "full clip",
        description="Which frames.",
    )
    short_videos: Literal["pad", "skip"] = Field(description="What happens to videos shorter than one clip.")
    image_size: int = Field(description="Frames resized (not cropped) to image_size x image_size.")
    resize: str = Field(description="Interpolation of the resize.")
    input_scaling: str = Field(
        default="uint8 RGB / 255 -> [0, 1] -> x * 2 - 1 -> [-1, 1]", description="Values the network receives."
    )
    architecture: str = Field(description="Network and variant.")


class VideoFeatures(Record):
    """Where one video's features are cached, and how they were made."""

    sample_id: str = Field(description="Video id (manifest id, or path relative to the folder).")
    path: str = Field(description="The video file.")
    features: str = Field(description="The .npy file of (count, dim) features, relative to the output folder.")
    count: int = Field(description="Feature vectors: frames (FID) or clips (FVD).")
    frame_indices: list[int] = Field(description="Frames used (FID), or first frame of each clip (FVD).")
    padded_frames: int = Field(default=0, description="Frames added by repeating the last one (FVD, short videos).")
    fingerprint: str = Field(description="Hash of protocol, extractor and weights the features were made with.")


class FeatureSet(Strict):
    """One side of the comparison."""

    source: str = Field(description="Manifest, folder or file the videos came from.")
    videos: int = Field(description="Videos listed.")
    used: int = Field(description="Videos whose features entered the statistics.")
    failed: int = Field(description="Videos that failed (see errors-<set>.jsonl).")
    failures: dict[str, int] = Field(default_factory=dict, description="Failed videos by reason.")
    samples: int = Field(description="Feature vectors (frames or clips) in the statistics.")
    padded_videos: int = Field(default=0, description="Videos padded by repeating their last frame.")
    shrinkage: float | None = Field(default=None, description="Shrinkage intensity applied to the covariance.")


class FrechetResult(Record):
    """An FID or FVD value with what it was computed from."""

    metric: Literal["fid", "fvd"] = Field(description="Which distance.")
    value: float = Field(description="The Fréchet distance (squared, as published FID/FVD values are).")
    real: FeatureSet = Field(description="The reference set.")
    generated: FeatureSet = Field(description="The generated set.")
    feature_dim: int = Field(description="Dimension of the features.")
    extractor: str = Field(description="Feature extractor.")
    weights: str = Field(description="Weights id: source and SHA-256 prefix, or random:seed=N.")
    comparable: bool = Field(description="Whether the value can be compared to published numbers.")
    notes: list[str] = Field(default_factory=list, description="Why it is not comparable, and other caveats.")
    protocol: FIDProtocol | FVDProtocol = Field(description="How frames were sampled and prepared.")


@dataclass(frozen=True)
class VideoItem:
    """A video of a set, as the extraction job carries it: its id and file, then, once the job's ``prepare``
    step has run, the sampled frames (FID) or clips (FVD) the extractor embeds."""

    sample_id: str
    path: Path | None
    """Absolute (the same file wherever the job runs); None when the manifest row has no local path."""
    frames: NDArray[np.uint8] | None = None
    indices: tuple[int, ...] = ()
    """Frames used (FID), or first frame of each clip (FVD)."""
    padded: int = 0
    """Frames added by repeating the last one (FVD, short videos)."""


def list_videos(source: Path) -> list[VideoItem]:
    """The videos of a set: manifest rows (paths relative to the manifest), a folder's video files (sorted,
    ids relative to the folder, subfolders included), or a single file. Paths are made absolute, so they name
    the same files on every machine of a cluster (given the same mounts)."""
    source = source.absolute()
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        return [VideoItem(path.relative_to(source).as_posix(), path) for path in files]
    if source.suffix == ".jsonl":
        items: list[VideoItem] = []
        for sample in read_records(source, VideoSample):
            path = None if sample.path is None else Path(sample.path)
            if path is not None and not path.is_absolute():
                path = source.parent / path
            items.append(VideoItem(sample.id, path))
        return items
    if source.is_file():
        return [VideoItem(source.name, source)]
    raise FileNotFoundError(f"{source}: no such manifest, folder or video")


def _file_name(sample_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id)[-60:]
    return f"{slug}-{hashlib.sha1(sample_id.encode()).hexdigest()[:12]}.npy"


def _decode_failure(path: Path, error: Exception) -> ItemFailure:
    return ItemFailure("undecodable", f"{path}: {error}", {"path": str(path)})


def sample_fid_frames(path: Path, frames_per_video: int) -> tuple[NDArray[np.uint8], list[int], int]:
    """(frames, indices, padded=0) for FID: evenly spaced frames, fewer for a short video."""
    from cookbook_data.video import VideoDecodeError, VisionSettings, probe, sample_frames

    try:
        info = probe(path)
        count = min(frames_per_video, info.num_frames - info.num_frames % 2)
        if count < 2:
            raise ItemFailure("too_short", f"{path}: {info.num_frames} frame(s), FID needs at least 2")
        sampled = sample_frames(path, VisionSettings(nframes=count))
    except (VideoDecodeError, ValueError) as error:
        raise _decode_failure(path, error) from None
    return sampled.frames, sampled.frame_indices, 0


def _decode_in_order(path: Path, wanted: Sequence[int]) -> tuple[dict[int, NDArray[np.uint8]], int]:
    """The frames at ``wanted`` (display order), decoding from the start; also how many frames were decoded
    (all of them when the video ends before the last wanted index)."""
    import av

    keep, last = set(wanted), max(wanted)
    frames: dict[int, NDArray[np.uint8]] = {}
    decoded = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in keep:
                frames[index] = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            decoded = index + 1
            if index >= last:
                break
    return frames, decoded


def clip_starts(total: int, length: int, clips: int) -> list[int]:
    """First frames of up to ``clips`` clips of ``length`` frames in a video of ``total`` frames."""
    if total <= length:
        return [0]
    return sorted({int(start) for start in np.linspace(0, total - length, clips).round()})


def sample_fvd_clips(
    path: Path, clip_length: int, clips_per_video: int, short_videos: Literal["pad", "skip"]
) -> tuple[NDArray[np.uint8], list[int], int]:
    """(clips (C, T, H, W, 3), clip starts, padded frames) for FVD."""
    from cookbook_data.video import VideoDecodeError, probe

    try:
        total = probe(path).num_frames
    except VideoDecodeError as error:
        raise _decode_failure(path, error) from None
    for _ in range(2):  # a second pass only when the container announced more frames than it holds
        if total < clip_length and short_videos == "skip":
            raise ItemFailure("too_short", f"{path}: {total} frames, shorter than a clip of {clip_length}")
        starts = clip_starts(total, clip_length, clips_per_video)
        wanted = sorted({start + offset for start in starts for offset in range(clip_length) if start + offset < total})
        try:
            frames, decoded = _decode_in_order(path, wanted)
        except Exception as error:
            raise _decode_failure(path, error) from None
        if decoded == 0:
            raise ItemFailure("undecodable", f"{path}: no frame could be decoded", {"path": str(path)})
        if decoded >= wanted[-1] + 1:
            break
        total = decoded
    else:
        raise ItemFailure("undecodable", f"{path}: frames end before the announced count", {"path": str(path)})
    clips, padded = [], 0
    for start in starts:
        indices = [min(start + offset, total - 1) for offset in range(clip_length)]
        padded += sum(1 for offset in range(clip_length) if start + offset >= total)
        clips.append(np.stack([frames[index] for index in indices]))
    return np.stack(clips), starts, padded


Sampler = Callable[[Path], tuple[NDArray[np.uint8], list[int], int]]
"""Frames (FID) or clips (FVD) of a video file, with their indices and padded count. A module-level function
or a ``functools.partial`` of one, since it travels to a cluster's CPU tasks."""


def _local_file(item: VideoItem) -> Path:
    if item.path is None:
        raise ItemFailure("missing_file", f"{item.sample_id}: the manifest row has no local path")
    if not item.path.is_file():
        raise ItemFailure("missing_file", f"{item.path}: no such file", {"path": str(item.path)})
    return item.path


def _sample(sampler: Sampler, item: VideoItem) -> VideoItem:
    """The extraction job's ``prepare`` step (CPU): the video decoded and sampled, ready to embed."""
    frames, indices, padded = sampler(_local_file(item))
    return replace(item, frames=frames, indices=tuple(indices), padded=padded)


def _save(features: NDArray[np.float64], target: Path) -> None:
    """Write ``target`` whole or not at all (a temporary file, then a rename), or fail the video with a reason
    that says where the output folder must be."""
    partial_file = target.with_suffix(".partial.npy")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(partial_file, features)
        partial_file.replace(target)
    except OSError as error:
        raise ItemFailure(
            "output_not_writable",
            f"{target.parent}: cannot write features here ({error}); on a cluster, the output folder must be on "
            "storage every node can write, at the same path",
            {"folder": str(target.parent)},
        ) from None


def _embed_batch(
    batch: list[VideoItem], extractor: Extractor, out: Path, folder: Path, fingerprint: str
) -> list[VideoFeatures]:
    """The extraction job's batch function: embeds the sampled videos together, saves each one's features
    under ``folder`` and returns its record (paths relative to ``out``)."""
    import torch

    inputs = []
    for item in batch:
        assert item.frames is not None, "the job's prepare step samples every video before it is embedded"
        inputs.append(extractor.network_input(item.frames))
    features = extractor.embed(torch.cat(inputs))
    records, start = [], 0
    for item, tensor in zip(batch, inputs, strict=True):
        count = int(tensor.shape[0])
        target = folder / _file_name(item.sample_id)
        _save(features[start : start + count], target)
        start += count
        records.append(
            VideoFeatures(
                sample_id=item.sample_id,
                path=str(item.path),
                features=target.relative_to(out).as_posix(),
                count=count,
                frame_indices=list(item.indices),
                padded_frames=item.padded,
                fingerprint=fingerprint,
            )
        )
    return records


@dataclass(frozen=True)
class _Embedder:
    """The extraction job's ``factory``: settings only, so it pickles to Ray actors; each call builds the
    extractor (once in this process on the local engine, once per actor on Ray) and refuses weights other than
    those the run is fingerprinted with (a node whose file at the same path differs)."""

    extractor: ExtractorSettings
    weights_id: str
    fingerprint: str
    out: Path
    folder: Path

    def __call__(self) -> Process[VideoItem, VideoFeatures]:
        extractor = self.extractor.build()
        if extractor.weights_id != self.weights_id:
            raise WeightsError(
                f"{self.extractor.weights}: loaded {extractor.weights_id} where the run started with "
                f"{self.weights_id}; every node must see the same weights file"
            )
        return partial(
            _embed_batch, extractor=extractor, out=self.out, folder=self.folder, fingerprint=self.fingerprint
        )


@dataclass(frozen=True)
class _Extraction:
    """How a run turns a set's videos into features: the sampler, the extractor's settings, and the weights id
    and fingerprint they were resolved to here, before any extractor is built."""

    sampler: Sampler
    extractor: ExtractorSettings
    weights_id: str
    fingerprint: str

    def job(self, name: SetName, config: _FrechetJobConfig) -> Job[VideoItem, VideoFeatures]:
        """The job extracting set ``name``: decoding in ``prepare``, the extractor built by the factory."""
        out = config.out.absolute()  # the folder the batches write in, wherever they run
        embedder = _Embedder(self.extractor, self.weights_id, self.fingerprint, out, out / "features" / name)
        return Job(
            stage=f"features-{name}",
            factory=embedder,
            prepare=partial(_sample, self.sampler),
            gpu=self.extractor.wants_gpu,
            item_id=lambda item: item.sample_id,
            out=config.out / f"features-{name}.jsonl",
            record_type=VideoFeatures,
            errors=config.out / f"errors-{name}.jsonl",
            batch_size=config.batch_size,
            workers=config.workers,
        )


def _extract_set(
    name: SetName, config: _FrechetJobConfig, extraction: _Extraction, progress: bool | None
) -> tuple[FeatureSet, NDArray[np.float64]]:
    source = config.real if name == "real" else config.generated
    items = list_videos(source)
    ids = [item.sample_id for item in items]
    job = extraction.job(name, config)
    paths: dict[str, str] = {}
    for item in items:  # the job processes an id's first copy only and records the others as DuplicateId
        paths.setdefault(item.sample_id, str(item.path))
    _outputs.refuse_stale(
        job,
        ids,
        lambda record: record.fingerprint == extraction.fingerprint and record.path == paths[record.sample_id],
        "are cached features made from another file, with another protocol or with other weights",
    )
    run_job(job, items, config=config, progress=progress, engine=config.engine)
    finished = _outputs.read_back(job, ids)
    arrays = [np.load(config.out / record.features) for record in finished.records.values()]
    features = np.concatenate(arrays) if arrays else np.zeros((0, extraction.extractor.kind.dim))
    summary = FeatureSet(
        source=str(source),
        videos=len(items),
        used=len(arrays),
        failed=finished.failed,
        failures=finished.failures,
        samples=int(features.shape[0]),
        padded_videos=sum(1 for record in finished.records.values() if record.padded_frames),
    )
    return summary, features


def _fit(name: SetName, summary: FeatureSet, features: NDArray[np.float64], config: _FrechetJobConfig) -> GaussianStats:
    if features.shape[0] < 2:
        raise ValueError(
            f"{name} set ({summary.source}): {summary.samples} feature vector(s) from {summary.used} of "
            f"{summary.videos} videos; at least 2 are needed (see {config.out / f'errors-{name}.jsonl'})"
        )
    try:
        return gaussian_stats(features, config.shrinkage)
    except RankDeficientError as error:
        raise RankDeficientError(f"{name} set ({summary.source}): {error}") from None


def _compare(
    metric: Literal["fid", "fvd"],
    config: _FrechetJobConfig,
    extractor: ExtractorSettings,
    protocol: FIDProtocol | FVDProtocol,
    sampler: Sampler,
    standard: dict[str, Any],
    progress: bool | None,
) -> FrechetResult:
    config.out.mkdir(parents=True, exist_ok=True)
    weights = weights_id(extractor.weights, extractor.seed)
    fingerprint = _outputs.fingerprint(
        {"protocol": protocol.model_dump(mode="json"), "extractor": extractor.kind.name, "weights": weights}
    )
    extraction = _Extraction(sampler, extractor, weights, fingerprint)
    real, real_features = _extract_set("real", config, extraction, progress)
    generated, generated_features = _extract_set("generated", config, extraction, progress)
    real_stats = _fit("real", real, real_features, config)
    generated_stats = _fit("generated", generated, generated_features, config)
    real.shrinkage, generated.shrinkage = real_stats.shrinkage, generated_stats.shrinkage
    notes: list[str] = []
    if not extractor.comparable:
        notes.append(RANDOM_WEIGHTS_NOTE)
    if config.shrinkage is not None:
        notes.append(f"covariances estimated with shrinkage ({config.shrinkage}), not the sample covariance")
    for key, value in standard.items():
        used: JsonValue = getattr(protocol, key)
        if used != value:
            notes.append(f"{key} is {used}, published {metric.upper()} uses {value}")
    result = FrechetResult(
        metric=metric,
        value=frechet_distance_between(real_stats, generated_stats),
        real=real,
        generated=generated,
        feature_dim=extractor.kind.dim,
        extractor=extractor.kind.name,
        weights=weights,
        comparable=not notes,
        notes=notes,
        protocol=protocol,
    )
    (config.out / f"{metric}.json").write_text(result.model_dump_json(indent=2) + "\n")
    return result


def _resize(config: _FrechetJobConfig) -> str:
    return "bilinear, antialiased" if config.antialias else "bilinear"


def compute_fid(config: FIDConfig, *, progress: bool | None = None) -> FrechetResult:
    """FID between ``config.real`` and ``config.generated``; writes ``<out>/fid.json`` and returns the result.

    Extraction runs on ``config.engine``; the network is loaded only where the batches run."""
    extractor = ExtractorSettings(
        InceptionFeatures,
        config.weights,
        image_size=config.image_size,
        antialias=config.antialias,
        seed=config.seed,
        device=config.device,
    )
    protocol = FIDProtocol(
        frames_per_video=config.frames_per_video,
        image_size=extractor.size,
        resize=_resize(config),
        architecture=InceptionFeatures.architecture,
    )
    sampler = partial(sample_fid_frames, frames_per_video=config.frames_per_video)
    standard = {"image_size": FID_IMAGE_SIZE, "resize": PUBLISHED_RESIZE}
    return _compare("fid", config, extractor, protocol, sampler, standard, progress)


def compute_fvd(config: FVDConfig, *, progress: bool | None = None) -> FrechetResult:
    """FVD between ``config.real`` and ``config.generated``; writes ``<out>/fvd.json`` and returns the result.

    Extraction runs on ``config.engine``; the network is loaded only where the batches run."""
    extractor = ExtractorSettings(
        I3DFeatures,
        config.weights,
        image_size=config.image_size,
        antialias=config.antialias,
        seed=config.seed,
        device=config.device,
        batch_size=4,
    )
    protocol = FVDProtocol(
        clip_length=config.clip_length,
        clips_per_video=config.clips_per_video,
        short_videos=config.short_videos,
        image_size=extractor.size,
        resize=_resize(config),
        architecture=I3DFeatures.architecture,
    )
    sampler = partial(
        sample_fvd_clips,
        clip_length=config.clip_length,
        clips_per_video=config.clips_per_video,
        short_videos=config.short_videos,
    )
    standard = {"image_size": FVD_IMAGE_SIZE, "clip_length": FVD_CLIP_LENGTH, "resize": PUBLISHED_RESIZE}
    return _compare("fvd", config, extractor, protocol, sampler, standard, progress)
