"""Checking a manifest row by row before anything expensive runs on it.

A sample that reaches training or inference broken costs far more than one caught here: cosmos-rl retries a
failing sample 50 times and then kills the run, and a decoder error in the middle of a batch job wastes the
batch. So every row is checked (record schema, file present, decodable first-to-last, duration, resolution,
rotation, frame-rate regularity); good rows go to the valid manifest with their probed video facts added
(under ``metadata["validate:video"]``, a key of validation's own, so no key of the user's metadata is ever
replaced), bad rows to the quarantine file with a reason code, the message and the original row. Nothing is
dropped without a trace. Rows sharing an id are judged whatever their order: of identical copies the first is
checked and the others reported as repeated; copies that differ are all held back (``conflicting_id``), since
which is right cannot be told.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pydantic_core
from pydantic import Field, JsonValue, ValidationError

from cookbook_data.engines import EngineConfig, LocalEngineConfig
from cookbook_data.jobs import DUPLICATE_ID, ItemFailure, Job, JobReport, run_job
from cookbook_data.records import differing_fields, read_records
from cookbook_data.schemas import ItemError, Strict, VideoSample, describe_validation_error
from cookbook_data.video import VideoDecodeError, VisionSettings, probe, sample_frames

REASONS = (
    "conflicting_id",
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
PROBE_KEY = "validate:video"
"""Metadata key of the video facts validation probed (frames, fps, duration, size, codec). It is validation's own
(the stage before the colon), so a key of the user's metadata such as ``video`` is kept as it is; validating a
valid manifest again replaces the facts an earlier validation wrote there."""
_CHECKED_AGAIN = frozenset({"missing_file", "conflicting_id"})
"""Quarantine reasons a rerun checks again: the video may have appeared, the manifest been mended, since."""
_RETRIED_ANYWAY = _CHECKED_AGAIN | {DUPLICATE_ID}
"""Quarantine lines a rerun replaces whatever the row holds now, so no change of the row need be looked for."""

log = logging.getLogger(__name__)


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


def _as_record(text: str) -> dict[str, Any]:
    """What copies of an id are compared by: the record a row stands for (defaults filled in), or its JSON object
    when it is no valid record."""
    try:
        return VideoSample.model_validate_json(text).model_dump(mode="json")
    except ValidationError:
        pass
    try:
        value = json.loads(text)
    except json.JSONDecodeError:  # a row without a readable id, named like one that has that id
        return {"row": text}
    return value if isinstance(value, dict) else {"row": text}


def _conflicts(manifest: Path) -> tuple[int, dict[str, str]]:
    """How many rows the manifest has, and the ids held by rows that differ, each with why none is used. A pass
    over the manifest before any row is checked, so the outcome does not depend on which copy comes first."""
    counts = Counter(_row_id(manifest, row) for row in _rows(manifest))
    copies: dict[str, list[Row]] = {key: [] for key, count in counts.items() if count > 1}
    if copies:
        for row in _rows(manifest):
            if (key := _row_id(manifest, row)) in copies:
                copies[key].append(row)
    conflicts = {}
    for key, rows in copies.items():
        if fields := differing_fields([_as_record(text) for _, text in rows]):
            lines = ", ".join(str(number) for number, _ in rows)
            conflicts[key] = (
                f"id {key!r} is on lines {lines}, whose rows differ in {', '.join(fields)}; none is used, as which "
                "is right cannot be told: keep one"
            )
    return counts.total(), conflicts


def check_row(config: ValidateConfig, row: Row, conflict: str | None = None) -> VideoSample:
    """The row as a valid sample (absolute path, probed facts under ``PROBE_KEY`` in its metadata) or an
    ItemFailure saying why not. ``conflict`` says why the row's id cannot be used (other rows hold it and differ)."""
    number, text = row

    def fail(reason: str, message: str) -> ItemFailure:
        details: dict[str, JsonValue] = {"line": number, "row": _original(text)}
        return ItemFailure(reason, f"{config.manifest}:{number}: {message}", details)

    if conflict is not None:
        raise fail("conflicting_id", conflict)
    try:
        sample = VideoSample.model_validate_json(text)
    except ValidationError as error:
        raise fail("invalid_record", describe_validation_error(error)) from None
    if sample.path is None:
        raise fail("missing_file", f"{sample.id}: no local path (only url {sample.url}); download it first")
    path = _resolved(config, sample.path)
    if not path.is_file():
        raise fail("missing_file", f"{path}: no such file")
    facts = _probed_facts(config, path, fail)
    return sample.model_copy(update={"path": str(path), "metadata": {**sample.metadata, PROBE_KEY: facts}})


def _original(text: str) -> JsonValue:
    """A row as its quarantine line keeps it: its JSON, or its text when it is not JSON."""
    try:
        value: JsonValue = json.loads(text)
    except json.JSONDecodeError:
        return text.rstrip("\n")
    return value


def _resolved(config: ValidateConfig, path: str) -> Path:
    """A row's video path as its valid record names it: relative paths are relative to the manifest."""
    given = Path(path)
    return given if given.is_absolute() else (config.manifest.parent / given).resolve()


def _without_facts(sample: VideoSample) -> dict[str, Any]:
    """A sample as its valid record holds it once written (NaN and infinities as null), without the facts a
    validation adds (the row may hold an earlier one's)."""
    record: dict[str, Any] = json.loads(sample.model_dump_json())
    record["metadata"].pop(PROBE_KEY, None)
    return record


def _as_written(value: Any) -> Any:
    """``value`` as it reads back from the outputs: records are written with NaN and infinities as null, so a row
    holding one compares equal to its own record. A value that cannot be written (a lone surrogate) is returned as
    it is: no earlier record can equal it."""
    try:
        return json.loads(pydantic_core.to_json(value, inf_nan_mode="null"))
    except pydantic_core.PydanticSerializationError:
        return value


def _as_valid(config: ValidateConfig, text: str) -> dict[str, Any] | None:
    """What the valid record of a row holds but for its probed facts (None for a row that cannot be valid)."""
    try:
        sample = VideoSample.model_validate_json(text)
    except ValidationError:
        return None
    if sample.path is None:
        return None
    return _without_facts(sample.model_copy(update={"path": str(_resolved(config, sample.path))}))


def _changed_since(config: ValidateConfig, conflicts: Mapping[str, str]) -> list[str]:
    """Ids of rows that an earlier run judged for good (valid, or quarantined for a reason not checked again)
    and whose row in the manifest differs now: a valid record is the row with its path resolved and facts
    added, a quarantine line keeps the row itself, so either tells a changed row without any video opened."""
    valid, quarantine = config.valid_path(), config.quarantine_path()
    records = (
        {sample.id: _without_facts(sample) for sample in read_records(valid, VideoSample)} if valid.exists() else {}
    )
    quarantined: dict[str, JsonValue] = {}
    if quarantine.exists():
        settled = (error for error in read_records(quarantine, ItemError) if error.error_type not in _RETRIED_ANYWAY)
        quarantined = {error.sample_id: error.details["row"] for error in settled if "row" in error.details}
    if not records and not quarantined:
        return []  # a first run: nothing was judged, so no row is read a second time
    changed: list[str] = []
    seen: set[str] = set()
    for number, text in _rows(config.manifest):
        key = _row_id(config.manifest, (number, text))
        if key in seen or key in conflicts:
            continue
        seen.add(key)
        if key in records:
            if _as_valid(config, text) != records[key]:
                changed.append(key)
        elif key in quarantined and _as_written(_original(text)) != quarantined[key]:
            changed.append(key)
    return changed


def _note_changed_rows(config: ValidateConfig, changed: frozenset[str]) -> None:
    """Say, in one line, which rows are checked again because they changed since an earlier run judged them."""
    if not changed:
        return
    shown = ", ".join(repr(key) for key in sorted(changed)[:3]) + (", ..." if len(changed) > 3 else "")
    rows = f"{len(changed)} rows" if len(changed) > 1 else "1 row"
    log.warning(
        "%s: %s changed since an earlier run checked them (%s); checking them again", config.manifest, rows, shown
    )


def _probed_facts(config: ValidateConfig, path: Path, fail: Callable[[str, str], ItemFailure]) -> dict[str, JsonValue]:
    """The facts of a video that decodes and keeps within the limits; else the failure of the first it breaks."""
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

    return {
        "num_frames": info.num_frames,
        "fps": info.fps,
        "duration_s": round(info.duration, 3),
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
    }


def check_rows(config: ValidateConfig, conflicts: Mapping[str, str], rows: list[Row]) -> list[VideoSample]:
    """:func:`check_row` over a batch of rows; ``conflicts``: ids held by rows that differ, and why."""
    return [check_row(config, row, conflicts.get(_row_id(config.manifest, row))) for row in rows]


def row_checker(config: ValidateConfig, conflicts: Mapping[str, str]) -> Callable[[list[Row]], list[VideoSample]]:
    """The validate job's batch function (what its factory builds where the rows are checked)."""
    return partial(check_rows, config, conflicts)


def _checked_again(ids: frozenset[str], record: dict[str, Any]) -> bool:
    """Whether a valid record of an earlier run is of a row to check again: one whose id differing rows of the
    manifest now hold (checked with them, and quarantined, as a first run does), or one that changed since."""
    return record.get("id") in ids


def _retried(changed: frozenset[str], error: dict[str, Any]) -> bool:
    """Whether a quarantined row is checked again: its failure may have been mended outside the manifest (a
    missing file downloaded, a conflicting copy removed), the row changed since, or its line does not keep the
    row (it could not be written), so a change could not be seen."""
    kept_row = "row" in (error.get("details") or {})
    return error.get("error_type") in _CHECKED_AGAIN or error.get("sample_id") in changed or not kept_row


def validate_manifest(config: ValidateConfig, *, progress: bool | None = None) -> JobReport:
    """Check every row of ``config.manifest``; valid rows and quarantined rows go to their files.

    Reruns resume: rows already in either output are not checked again (a broken file stays broken), except
    rows quarantined as ``missing_file``, whose video may have been downloaded or mounted since, or as
    ``conflicting_id``, whose manifest may have been mended since, and valid rows whose id differing rows of
    the manifest now hold. Rows that differ from the row an earlier run judged (labels edited, a record mended)
    are checked again too, and named in a warning, so the outputs follow the manifest.
    """
    total, conflicts = _conflicts(config.manifest)
    changed = frozenset(_changed_since(config, conflicts))
    _note_changed_rows(config, changed)
    job: Job[Row, VideoSample] = Job(
        stage="validate",
        factory=partial(row_checker, config, conflicts),
        item_id=partial(_row_id, config.manifest),
        out=config.valid_path(),
        record_type=VideoSample,
        errors=config.quarantine_path(),
        id_field="id",
        workers=config.workers,
        retry_failed=False,
        retried=partial(_retried, changed),
        redo=partial(_checked_again, frozenset(conflicts) | changed),
        redo_failure_drops=True,
    )
    return run_job(job, _rows(config.manifest), config=config, progress=progress, total=total, engine=config.engine)
