"""Ingestion: turn a labelled dataset or a folder of videos into a manifest of :class:`VideoSample` records.

The manifest is the first file of every pipeline; everything downstream joins on its ids. So ids are
derived from what identifies a video (its URL, or its path inside the folder), never from a row's
position, and a rerun or a reshuffled copy of the same source gives the same ids. Both kinds of ingestion
run through :func:`cookbook_data.jobs.run_job`: a rerun resumes without writing a sample twice, a bad row
becomes one line in the errors file instead of stopping the run, and ``config.resolved.json`` records
what the run used.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, JsonValue

from cookbook_data.download import VIDEO_SUFFIXES, VideoCache, url_digest
from cookbook_data.jobs import Job, JobReport, run_job
from cookbook_data.schemas import Strict, VideoSample

VIDEOPHY2_LABEL_COLUMNS = (
    "sa",
    "pc",
    "joint",
    "physics_rules_followed",
    "physics_rules_unfollowed",
    "physics_rules_cannot_be_determined",
    "human_violated_rules",
)
"""VideoPhy-2 columns holding human judgements: they become ``VideoSample.labels``."""
VIDEOPHY2_METADATA_COLUMNS = ("action", "category", "is_hard", "metadata_rules", "upsampled_caption")
"""Known VideoPhy-2 columns describing the prompt: they go to ``VideoSample.metadata``, as do unknown ones."""
LIKERT_COLUMNS = ("sa", "pc")
"""Labels on VideoPhy-2's 1-5 scale, checked on every row."""
SOURCE_KEY = "source"
"""Metadata key holding where a sample came from (dataset, split, row or file); for tracing only."""

_LOCAL_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
_SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json")


class LabelError(ValueError):
    """A row whose labels break the dataset's rules (e.g. ``pc`` outside 1-5)."""


class LabelsFileError(ValueError):
    """A row of a labels file that names no video, names one twice, or cannot be read."""


# --------------------------------------------------------------------------------------------------- configs


class VideoPhy2IngestConfig(Strict):
    """Ingest VideoPhy-2 (or a local copy of it) into a manifest, optionally downloading the videos."""

    source: str = Field(
        default="videophysics/videophy2_train",
        description=(
            "Hub dataset id (videophysics/videophy2_train or videophysics/videophy2_test), or a local copy: "
            "a .parquet/.json/.jsonl/.csv file, a folder written by `save_to_disk`, or a folder of data files."
        ),
    )
    split: str | None = Field(
        default=None,
        description=(
            "Split to read when the source has several; None takes the only one. For a single local file it "
            "only names the split in each sample's metadata."
        ),
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit) to read.")
    out: Path = Field(description="Manifest to write (JSONL of VideoSample); appended to and resumed on rerun.")
    errors: Path | None = Field(
        default=None, description="JSONL of per-row errors; None writes `<manifest stem>.errors.jsonl` beside it."
    )
    download: bool = Field(
        default=False, description="Download each video into the cache and set the sample's `path` to it."
    )
    cache_dir: Path | None = Field(
        default=None, description="Folder of downloaded videos, one file per URL; None uses `videos/` beside it."
    )
    timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="Seconds to wait for a connection or a read before a download fails."
    )
    workers: Annotated[int, Field(ge=1)] = Field(
        default=8, description="Videos downloaded in parallel (without `download` one worker maps the rows)."
    )
    limit: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Read only the first this many rows (to try a run); None reads all."
    )
    id_prefix: str = Field(
        default="videophy2", min_length=1, description="Ids are `<prefix>-<first 16 hex of sha256(video_url)>`."
    )


class FolderIngestConfig(Strict):
    """Ingest a folder of videos (searched recursively), with labels from an optional CSV or JSONL file."""

    folder: Path = Field(description="Folder searched recursively for .mp4/.mov/.mkv/.avi/.webm files.")
    out: Path = Field(description="Manifest to write (JSONL of VideoSample); appended to and resumed on rerun.")
    labels: Path | None = Field(
        default=None,
        description=(
            "CSV or JSONL file, one row per video: a column naming the video, `caption` for its caption, "
            "every other column a label. None ingests the videos without labels."
        ),
    )
    video_column: str | None = Field(
        default=None,
        description=(
            "Labels column naming the video by path relative to the folder or by id (path without suffix); "
            "None uses the first of `id`, `video`, `path`, `file_name` that the file has."
        ),
    )
    errors: Path | None = Field(
        default=None, description="JSONL of per-item errors; None writes `<manifest stem>.errors.jsonl` beside it."
    )


def default_errors_path(out: Path) -> Path:
    """Errors file used when none is given: ``manifest.jsonl`` -> ``manifest.errors.jsonl``."""
    return out.with_name(f"{out.stem}.errors.jsonl")


# ------------------------------------------------------------------------------------------------ VideoPhy-2


@dataclass(frozen=True)
class _Row:
    index: int
    data: Mapping[str, Any]


def ingest_videophy2(config: VideoPhy2IngestConfig, *, progress: bool | None = None) -> JobReport:
    """Write one VideoSample per VideoPhy-2 row to ``config.out``; rows that break the rules go to errors.

    Every column is kept: human judgements as labels, everything else as metadata, so later stages
    never need the original dataset. Ids come from the video URL, so they survive reshuffling and
    balancing; with ``download`` the cache is keyed by URL for the same reason.
    """
    errors = config.errors or default_errors_path(config.out)
    cache_dir = config.cache_dir or config.out.parent / "videos"
    config = config.model_copy(update={"errors": errors, "cache_dir": cache_dir})
    dataset, split = load_videophy2(config.source, split=config.split, revision=config.revision)
    if config.limit is not None:
        dataset = dataset.select(range(min(config.limit, len(dataset))))
    cache = VideoCache(cache_dir, timeout_s=config.timeout_s) if config.download else None
    source = {"dataset": config.source, "split": split}

    def process(batch: list[_Row]) -> list[VideoSample]:
        return [videophy2_sample(row.data, row.index, config.id_prefix, source, cache) for row in batch]

    job = Job(
        stage="ingest",
        process=process,
        item_id=lambda row: _videophy2_id(row, config.id_prefix),
        out=config.out,
        record_type=VideoSample,
        errors=errors,
        id_field="id",
        workers=config.workers if config.download else 1,  # mapping rows alone needs no parallelism
    )
    rows = (_Row(index, row) for index, row in enumerate(dataset))
    return run_job(job, rows, config=config, progress=progress, total=len(dataset))


def load_videophy2(source: str, *, split: str | None = None, revision: str | None = None) -> tuple[Any, str | None]:
    """The rows of a VideoPhy-2 source as one ``datasets.Dataset``, and the name of its split.

    A path that exists is read locally (no network); anything else is a hub id. A path-looking source
    that does not exist fails here rather than being sent to the hub as a dataset name.
    """
    import datasets

    path = Path(source).expanduser()
    if path.is_dir():
        if any((path / marker).is_file() for marker in _SAVED_DATASET_MARKERS):
            return _one_split(datasets.load_from_disk(str(path)), split, source)
        return _one_split(datasets.load_dataset(str(path)), split, source)
    if path.is_file():
        builder = _LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"{path}: unknown data file type; use one of {', '.join(_LOCAL_BUILDERS)}")
        loaded = datasets.load_dataset(builder, data_files=str(path), split="train")
        return loaded, split
    if path.suffix.lower() in _LOCAL_BUILDERS or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such file or folder")
    return _one_split(datasets.load_dataset(source, split=split, revision=revision), split, source)


def _one_split(loaded: Any, split: str | None, source: str) -> tuple[Any, str | None]:
    """Pick one split of a DatasetDict (the one asked for, or the only one); a Dataset passes through."""
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        return loaded, split
    names = list(loaded)
    if split is None and len(names) == 1:
        split = names[0]
    if split not in loaded:
        wanted = f"no split {split!r}" if split is not None else "several splits"
        raise ValueError(f"{source}: {wanted}; choose one of {', '.join(names)} with `split`")
    return loaded[split], split


def _videophy2_id(row: _Row, prefix: str) -> str:
    url = row.data.get("video_url")
    if isinstance(url, str) and url.strip():
        return f"{prefix}-{url_digest(url.strip())[:16]}"
    return f"{prefix}-row-{row.index}"  # only to name the error this row will raise


def videophy2_sample(
    row: Mapping[str, Any],
    index: int,
    id_prefix: str = "videophy2",
    source: Mapping[str, JsonValue] | None = None,
    cache: VideoCache | None = None,
) -> VideoSample:
    """Map one VideoPhy-2 row to a VideoSample; raises :class:`LabelError` for a row that breaks the rules.

    ``index`` is recorded in the metadata for tracing only; nothing depends on it. With a ``cache`` the
    video is fetched (or reused) and its absolute path recorded.
    """
    url = row.get("video_url")
    if not isinstance(url, str) or not url.strip():
        raise LabelError(f"row {index}: `video_url` is missing or empty")
    url = url.strip()
    for name in LIKERT_COLUMNS:
        if name not in row:
            raise LabelError(f"row {index}: no `{name}` column")
    labels = {name: _json_value(row[name]) for name in VIDEOPHY2_LABEL_COLUMNS if name in row}
    for name in LIKERT_COLUMNS:
        labels[name] = _likert(labels[name], name, index)
    known = {"video_url", "caption", *VIDEOPHY2_LABEL_COLUMNS}
    metadata = {name: _json_value(value) for name, value in row.items() if name not in known}
    if SOURCE_KEY in metadata:  # an unexpected column of that name keeps its value under another key
        metadata[f"column:{SOURCE_KEY}"] = metadata.pop(SOURCE_KEY)
    metadata[SOURCE_KEY] = {**(source or {}), "row": index}
    caption = row.get("caption")
    path = str(cache.fetch(url).resolve()) if cache is not None else None
    return VideoSample(
        id=f"{id_prefix}-{url_digest(url)[:16]}",
        path=path,
        url=url,
        caption=None if caption is None else str(caption),
        labels=labels,
        metadata=metadata,
    )


def _likert(value: JsonValue, name: str, index: int) -> int:
    """A 1-5 score as an int (``4.0`` is accepted as 4); anything else is a :class:`LabelError`."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise LabelError(f"row {index}: `{name}` must be an integer from 1 to 5, got {value!r}")
    return value


def _json_value(value: Any) -> JsonValue:
    """A cell as a JSON value: NaN/inf become None, tuples lists, anything exotic its string form."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if hasattr(value, "item"):  # numpy scalars
        return _json_value(value.item())
    return str(value)


# ---------------------------------------------------------------------------------------------------- folder


@dataclass
class FolderIngestReport(JobReport):
    """A job report plus how many videos had no labels row (they are in the manifest with empty labels)."""

    unlabeled: int = 0

    def summary(self) -> str:
        return f"{super().summary()}; {self.unlabeled} videos without labels"


@dataclass(frozen=True)
class _FolderItem:
    id: str
    path: Path | None = None
    caption: str | None = None
    labels: dict[str, JsonValue] = field(default_factory=dict)
    source: dict[str, JsonValue] = field(default_factory=dict)
    problem: str | None = None
    """Set for a labels row that cannot become a sample; processing it raises this message."""


def ingest_folder(config: FolderIngestConfig, *, progress: bool | None = None) -> FolderIngestReport:
    """Write one VideoSample per video under ``config.folder``, with labels from ``config.labels``.

    Ids are paths relative to the folder without their suffix, so they are stable across runs and
    machines; paths are absolute so the manifest works from any directory. Labels rows that name no
    video are errors (a typo must not silently drop a label); videos without a row are kept.
    """
    errors = config.errors or default_errors_path(config.out)
    config = config.model_copy(update={"errors": errors})
    folder = config.folder.expanduser().resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"{config.folder}: not a folder")
    videos, clashing = find_videos(folder)
    rows = read_labels(config.labels, config.video_column) if config.labels is not None else iter(())
    items, unlabeled = _folder_items(folder, videos, clashing, rows)

    def process(batch: list[_FolderItem]) -> list[VideoSample]:
        return [_folder_sample(item) for item in batch]

    job = Job(
        stage="ingest",
        process=process,
        item_id=lambda item: item.id,
        out=config.out,
        record_type=VideoSample,
        errors=errors,
        id_field="id",
    )
    report = run_job(job, items, config=config, progress=progress)
    return FolderIngestReport(**asdict(report), unlabeled=unlabeled)


def find_videos(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Videos under ``folder`` by id (relative path without suffix), sorted; hidden files and folders skipped.
    Second, the videos left out because a video before them has their id (``clip.mp4`` after ``clip.mov``),
    each with that video: they are reported, not dropped in silence.

    Hidden entries are skipped so a download cache's temporary files (``.name.part.mp4``) never count.
    """
    found: dict[str, Path] = {}
    clashing: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.suffix.lower() not in VIDEO_SUFFIXES or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            video_id = relative.with_suffix("").as_posix()
            if video_id in found:
                clashing[relative.as_posix()] = found[video_id]
            else:
                found[video_id] = path
    return found, clashing


def _clash_message(folder: Path, name: str, holder: Path) -> str:
    return (
        f"{folder / name} is not ingested: its id is taken by {holder} (ids are paths without their suffix; "
        "rename one of them)"
    )


@dataclass(frozen=True)
class LabelsRow:
    """One row of a labels file: where it is, which video it names, and its cells (or why it is unreadable)."""

    where: str
    """``file:line``, for error messages and tracing."""
    video: str | None
    cells: dict[str, JsonValue]
    problem: str | None = None


def read_labels(path: Path, video_column: str | None = None) -> Iterator[LabelsRow]:
    """Rows of a CSV or JSONL labels file. CSV cells that read as JSON numbers, booleans or lists are parsed."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, video_column)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(path, video_column)
    raise ValueError(f"{path}: labels must be a .csv or .jsonl file")


_VIDEO_COLUMNS = ("id", "video", "path", "file_name")


def _video_column(path: Path, columns: list[str], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{path}: no column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    for name in _VIDEO_COLUMNS:
        if name in columns:
            return name
    raise ValueError(f"{path}: no column naming the video; add one of {', '.join(_VIDEO_COLUMNS)} or set video_column")


def _read_csv(path: Path, video_column: str | None) -> Iterator[LabelsRow]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        column = _video_column(path, list(reader.fieldnames or []), video_column)
        for row in reader:
            cells = {str(key): _cell(key, value) for key, value in row.items() if key is not None}
            video = row.get(column)
            yield LabelsRow(f"{path.name}:{reader.line_num}", video or None, _without(cells, column))


def _cell(name: str, text: str | None) -> JsonValue:
    """A CSV cell: empty is None, the caption stays text, JSON-looking text is parsed, the rest stays text.

    A number is taken only when it reads back as written (``4``, ``0.5``): ``1.50`` or ``1e3`` stay text, so a
    free-text answer reaches the dataset as the annotator wrote it, not as ``1.5`` or ``1000.0``."""
    if text is None or text == "":
        return None
    if name == "caption":
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    if isinstance(value, int | float) and not isinstance(value, bool) and json.dumps(value) != text:
        return text
    return value if isinstance(value, int | float | bool | list) else text


def _read_jsonl(path: Path, video_column: str | None) -> Iterator[LabelsRow]:
    column: str | None = None
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
            except ValueError as error:
                yield LabelsRow(where, None, {}, problem=f"{where}: not valid JSON ({error})")
                continue
            if not isinstance(row, dict):
                yield LabelsRow(where, None, {}, problem=f"{where}: expected a JSON object per line")
                continue
            column = column or _video_column(path, list(row), video_column)
            video = row.get(column)
            cells = {str(key): _json_value(value) for key, value in row.items()}
            yield LabelsRow(where, None if video in (None, "") else str(video), _without(cells, column))


def _without(cells: dict[str, JsonValue], column: str) -> dict[str, JsonValue]:
    return {key: value for key, value in cells.items() if key != column}


def _normalize_name(name: str, folder: Path) -> str:
    """A video reference as a folder-relative posix path: backslashes, ``./`` and absolute paths handled."""
    name = name.strip().replace("\\", "/")
    as_path = Path(name)
    if as_path.is_absolute():
        try:
            return as_path.resolve().relative_to(folder).as_posix()
        except ValueError:
            return name
    return Path(name).as_posix().removeprefix("./")


def _folder_items(
    folder: Path, videos: dict[str, Path], clashing: dict[str, Path], rows: Iterator[LabelsRow]
) -> tuple[list[_FolderItem], int]:
    """Join labels rows to videos. Returns the items (videos, then problems: videos whose id is taken, rows)
    and the unlabeled count."""
    by_path = {path.relative_to(folder).as_posix(): video_id for video_id, path in videos.items()}
    matched: dict[str, LabelsRow] = {}
    problems = [
        _FolderItem(id=name, source={"folder": str(folder)}, problem=_clash_message(folder, name, holder))
        for name, holder in clashing.items()
    ]
    for row in rows:
        video_id, problem = _match_row(row, folder, videos, by_path, matched)
        if problem and (name := _normalize_name(row.video or "", folder)) in clashing:
            problem = f"{row.where}: names {row.video!r}; {_clash_message(folder, name, clashing[name])}"
        if video_id is not None:
            matched[video_id] = row
        else:
            problems.append(_FolderItem(id=row.where, source={"labels": row.where}, problem=problem))
    items = []
    for video_id, path in videos.items():
        labelled = matched.get(video_id)
        cells = dict(labelled.cells) if labelled is not None else {}
        caption = cells.pop("caption", None)
        source: dict[str, JsonValue] = {"folder": str(folder)}
        if labelled is not None:
            source["labels"] = labelled.where
        items.append(
            _FolderItem(
                id=video_id,
                path=path,
                caption=None if caption is None else str(caption),
                labels=cells,
                source=source,
            )
        )
    return items + problems, len(videos) - len(matched)


def _match_row(
    row: LabelsRow, folder: Path, videos: dict[str, Path], by_path: dict[str, str], matched: dict[str, LabelsRow]
) -> tuple[str | None, str]:
    """The id of the video a labels row names, or None and why the row cannot be used."""
    if row.problem is not None:
        return None, row.problem
    if row.video is None:
        return None, f"{row.where}: the row names no video"
    name = _normalize_name(row.video, folder)
    video_id = by_path.get(name) or (name if name in videos else None)
    if video_id is None:
        return None, f"{row.where}: names {row.video!r}, which is not a video under {folder}"
    if video_id in matched:
        return None, f"{row.where}: labels {video_id!r} again (first at {matched[video_id].where}); row ignored"
    return video_id, ""


def _folder_sample(item: _FolderItem) -> VideoSample:
    if item.problem is not None or item.path is None:
        raise LabelsFileError(item.problem or f"{item.id}: no video")
    return VideoSample(
        id=item.id,
        path=str(item.path),
        caption=item.caption,
        labels=item.labels,
        metadata={SOURCE_KEY: item.source},
    )
