"""Checking a manifest row by row before anything expensive runs on it.

A sample that reaches training or inference broken costs far more than one caught here: cosmos-rl retries a
failing sample 50 times and then kills the run, and a decoder error in the middle of a batch job wastes the
batch. So every row is checked (record schema, file present, decodable first-to-last, duration, resolution,
rotation, frame-rate regularity); good rows go to the valid manifest with their probed video facts added,
bad rows to the quarantine file with a reason code, the message and the original row. Nothing is dropped
without a trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from pydantic import Field, JsonValue, ValidationError

from cookbook_data.engines import EngineConfig, LocalEngineConfig
from cookbook_data.jobs import ItemFailure, Job, JobReport, run_job
from cookbook_data.schemas import Strict, VideoSample, describe_validation_error
from cookbook_data.video import VideoDecodeError, VisionSettings, probe, sample_frames

REASONS = (
    "invalid_record",
    "missing_file",
    "undecodable",
    "too_short",
    "too_long",
    "resolution_too_small",
    "resolution_too_large",
    "rotated",
    "variable_frame_rate",
)
"""Reason codes a quarantined row carries (the ``error_type`` of its record)."""


class ValidateConfig(Strict):
    """What `cookbook-data validate` checks and where it writes."""

    manifest: Path = Field(description="VideoSample JSONL manifest to check.")
    out: Path | None = Field(
        default=None, description="Manifest of the valid rows (default: <manifest>.valid.jsonl beside it)."
    )
    quarantine: Path | None = Field(
        default=None, description="Rows held back, with reasons (default: <manifest>.quarantine.jsonl)."
    )
    min_duration_s: float = Field(default=0.5, ge=0, description="Shortest accepted video, in seconds.")
    max_duration_s: float | None = Field(default=None, gt=0, description="Longest accepted video, in seconds.")
    min_side: int = Field(default=28, gt=0, description="Smallest accepted width or height, in pixels.")
    max_side: int = Field(default=3840, gt=0, description="Largest accepted width or height, in pixels.")
    allow_rotated: bool = Field(
        default=False,
        description="Accept videos with a rotation flag (decoders used for training ignore it: frames come sideways).",
    )
    allow_variable_frame_rate: bool = Field(
        default=False, description="Accept variable-frame-rate videos (timestamps from the average fps are off)."
    )
    workers: int = Field(default=2, ge=1, description="Rows checked in parallel (local engine).")
    engine: EngineConfig = Field(
        default_factory=LocalEngineConfig, description="Where the rows are checked: local, or a Ray cluster."
    )

    def valid_path(self) -> Path:
        return self.out or self.manifest.with_name(self.manifest.stem + ".valid.jsonl")

    def quarantine_path(self) -> Path:
        return self.quarantine or self.manifest.with_name(self.manifest.stem + ".quarantine.jsonl")


Row = tuple[int, str]
"""A manifest line: (line number, text)."""


def _rows(manifest: Path) -> Iterator[Row]:
    with manifest.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def _row_id(manifest: Path, row: Row) -> str:
    """The row's sample id, or ``<manifest>:<line>`` when the row has none readable."""
    number, text = row
    try:
        value = json.loads(text).get("id")
    except (json.JSONDecodeError, AttributeError):
        value = None
    return value if isinstance(value, str) and value else f"{manifest.name}:{number}"


def check_row(config: ValidateConfig, row: Row) -> VideoSample:
    """The row as a valid sample (absolute path, probed facts in metadata) or an ItemFailure saying why not."""
    number, text = row
    original: JsonValue
    try:
        original = json.loads(text)
    except json.JSONDecodeError:
        original = text.rstrip("\n")

    def fail(reason: str, message: str) -> ItemFailure:
        details: dict[str, JsonValue] = {"line": number, "row": original}
        return ItemFailure(reason, f"{config.manifest}:{number}: {message}", details)

    try:
        sample = VideoSample.model_validate_json(text)
    except ValidationError as error:
        raise fail("invalid_record", describe_validation_error(error)) from None
    if sample.path is None:
        raise fail("missing_file", f"{sample.id}: no local path (only url {sample.url}); download it first")
    path = Path(sample.path)
    if not path.is_absolute():
        path = (config.manifest.parent / path).resolve()
    if not path.is_file():
        raise fail("missing_file", f"{path}: no such file")
    try:
        info = probe(path)
        sample_frames(path, VisionSettings(nframes=2))  # first and last frame: catches cut-off files
    except (VideoDecodeError, ValueError) as error:
        raise fail("undecodable", str(error)) from None

    if info.duration < config.min_duration_s:
        raise fail("too_short", f"{path}: {info.duration:.2f} s < {config.min_duration_s} s")
    if config.max_duration_s is not None and info.duration > config.max_duration_s:
        raise fail("too_long", f"{path}: {info.duration:.2f} s > {config.max_duration_s} s")
    if min(info.width, info.height) < config.min_side:
        raise fail("resolution_too_small", f"{path}: {info.width}x{info.height}, a side < {config.min_side}")
    if max(info.width, info.height) > config.max_side:
        raise fail("resolution_too_large", f"{path}: {info.width}x{info.height}, a side > {config.max_side}")
    if info.rotation and not config.allow_rotated:
        raise fail("rotated", f"{path}: rotated by {info.rotation} degrees")
    if info.variable_frame_rate and not config.allow_variable_frame_rate:
        raise fail("variable_frame_rate", f"{path}: variable frame rate")

    facts = {
        "num_frames": info.num_frames,
        "fps": info.fps,
        "duration_s": round(info.duration, 3),
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
    }
    return sample.model_copy(update={"path": str(path), "metadata": {**sample.metadata, "video": facts}})


def check_rows(config: ValidateConfig, rows: list[Row]) -> list[VideoSample]:
    """:func:`check_row` over a batch of rows."""
    return [check_row(config, row) for row in rows]


def row_checker(config: ValidateConfig) -> Callable[[list[Row]], list[VideoSample]]:
    """The validate job's batch function (what its factory builds where the rows are checked)."""
    return partial(check_rows, config)


def validate_manifest(config: ValidateConfig, *, progress: bool | None = None) -> JobReport:
    """Check every row of ``config.manifest``; valid rows and quarantined rows go to their files.

    Reruns resume: rows already in either output are not checked again (a broken file stays broken), except
    rows quarantined as ``missing_file``, whose video may have been downloaded or mounted since.
    """
    job: Job[Row, VideoSample] = Job(
        stage="validate",
        factory=partial(row_checker, config),
        item_id=partial(_row_id, config.manifest),
        out=config.valid_path(),
        record_type=VideoSample,
        errors=config.quarantine_path(),
        id_field="id",
        workers=config.workers,
        retry_failed=False,
        retried_errors=frozenset({"missing_file"}),
    )
    total = sum(1 for _ in _rows(config.manifest))
    return run_job(job, _rows(config.manifest), config=config, progress=progress, total=total, engine=config.engine)
