"""Ingestion: turn a labelled dataset or a folder of videos into a manifest of :class:`VideoSample` records.

The manifest is the first file of every pipeline; everything downstream joins on its ids. So ids are
derived from what identifies a video (its URL, or its path inside the folder), never from a row's
position, and a rerun or a reshuffled copy of the same source gives the same ids. VideoPhy-2 ingestion runs
through :func:`cookbook_data.jobs.run_job`, since downloads are slow and fail one by one: a rerun resumes
without writing a sample twice, and a bad row becomes one line in the errors file instead of stopping the
run. A folder's manifest is derived from the folder and its labels file alone, so it is rebuilt whole on every
run. Both write ``config.resolved.json`` with what the run used.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, JsonValue

from cookbook_data.download import VIDEO_SUFFIXES, VideoCache, url_digest
from cookbook_data.jobs import Job, JobReport, run_job, write_resolved_config
from cookbook_data.records import read_records, write_records
from cookbook_data.schemas import ItemError, Strict, VideoSample

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
        default=False,
        description="Download each video into the cache and set the sample's `path` to it; on a rerun, samples "
        "written without their video get it.",
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
    """Ingest a folder of videos (searched recursively), with labels from an optional CSV, JSON or JSONL file."""

    folder: Path = Field(description="Folder searched recursively for .mp4/.mov/.mkv/.avi/.webm files.")
    out: Path = Field(description="Manifest to write (JSONL of VideoSample); rebuilt and replaced on every run.")
    labels: Path | None = Field(
        default=None,
        description=(
            "CSV, JSON (an array of rows) or JSONL file, one row per video: a column naming the video, `caption` "
            "for its caption, every other column a label. None ingests the videos without labels."
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
    balancing; with ``download`` the cache is keyed by URL for the same reason. With ``download``, a sample
    already in the manifest without its video (written by a run without ``download``, or whose cached file has
    gone) is not done: its video is fetched and its record replaced.
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
        redo=_without_video if config.download else None,
        workers=config.workers if config.download else 1,  # mapping rows alone needs no parallelism
    )
    rows = (_Row(index, row) for index, row in enumerate(dataset))
    return run_job(job, rows, config=config, progress=progress, total=len(dataset))


def _without_video(record: dict[str, Any]) -> bool:
    """Whether a manifest record has no local video: it was written without ``download``, or its cached file has
    since been deleted or moved (one stat per record, so a rerun heals the cache instead of leaving a sample that
    building would drop)."""
    path = record.get("path")
    return path is None or not Path(path).is_file()


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

LABELS_FILE_ERROR = "LabelsFileError"
"""Error type of a labels row that names no video, names one twice or cannot be read, and of a video whose id
another video has."""


@dataclass
class FolderIngestReport(JobReport):
    """What a folder ingestion wrote: ``succeeded`` counts the records that are new or changed since the previous
    manifest, ``skipped`` those it held as they are, ``failed`` the errors. Also how many written videos have no
    labels row (they are in the manifest with empty labels) and how many records of the previous manifest are
    gone (their video was removed or renamed)."""

    unlabeled: int = 0
    removed: int = 0

    def summary(self) -> str:
        return f"{super().summary()}; {self.unlabeled} videos without labels; {self.removed} earlier records removed"


def ingest_folder(config: FolderIngestConfig) -> FolderIngestReport:
    """Write one VideoSample per video under ``config.folder``, with labels from ``config.labels``, and the
    errors file of what could not be joined.

    The manifest is derived from the folder and the labels file as they are now, so every run rebuilds it and
    replaces it (and the errors file) whole, each in one rename: a mended labels row reaches its video, a
    removed video leaves the manifest, an error that no longer holds leaves the errors file. Nothing is
    downloaded or decoded, so a rebuild costs a walk of the folder. Ids are paths relative to the folder
    without their suffix, so they are stable across runs and machines; paths are absolute so the manifest
    works from any directory. Labels rows that name no video are errors (a typo must not silently drop a
    label); videos without a row are kept.
    """
    started = time.perf_counter()
    errors = config.errors or default_errors_path(config.out)
    config = config.model_copy(update={"errors": errors})
    folder = config.folder.expanduser().resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"{config.folder}: not a folder")
    videos, clashing = find_videos(folder)
    rows = read_labels(config.labels, config.video_column) if config.labels is not None else iter(())
    samples, problems, unlabeled = _join(folder, videos, clashing, rows)
    earlier = {sample.id: sample for sample in read_records(config.out, VideoSample)} if config.out.is_file() else {}
    write_resolved_config(config.out.parent, config)
    write_records(errors, ItemError, problems)
    write_records(config.out, VideoSample, samples)
    unchanged = sum(1 for sample in samples if earlier.get(sample.id) == sample)
    return FolderIngestReport(
        stage="ingest",
        total=len(samples) + len(problems),
        skipped=unchanged,
        succeeded=len(samples) - unchanged,
        failed=len(problems),
        elapsed_s=time.perf_counter() - started,
        failures_by_type={LABELS_FILE_ERROR: len(problems)} if problems else {},
        unlabeled=unlabeled,
        removed=len(earlier.keys() - {sample.id for sample in samples}),
    )


def find_videos(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Videos under ``folder`` by id (relative path without suffix), sorted; hidden files and folders skipped.
    Second, the videos left out because a video before them has their id (``clip.mp4`` after ``clip.mov``),
    each with that video: they are reported, not dropped in silence.

    Hidden entries are skipped so a download cache's temporary files (``.name.part.mp4``) never count.
    """
    found: dict[str, Path] = {}
    clashing: dict[str, Path] = {}
    for path in sorted(_files_under(folder)):
        relative = path.relative_to(folder)
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            video_id = relative.with_suffix("").as_posix()
            if video_id in found:
                clashing[relative.as_posix()] = found[video_id]
            else:
                found[video_id] = path
    return found, clashing


def _files_under(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` but not hidden ones or those in hidden folders, following symlinked folders (a
    folder of videos is often a link to where they are stored), each real folder once so that a link to a
    folder above it cannot loop."""
    seen: set[tuple[int, int]] = set()
    for root, folders, files in os.walk(folder, followlinks=True):
        where = Path(root).stat()
        if (where.st_dev, where.st_ino) in seen:
            folders.clear()
            continue
        seen.add((where.st_dev, where.st_ino))
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        yield from (Path(root, name) for name in files if not name.startswith("."))


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
    looked_for: tuple[str, ...] = ()
    """The column(s) a video name was looked for in, to tell a row that names none what it lacks."""


def read_labels(path: Path, video_column: str | None = None) -> Iterator[LabelsRow]:
    """Rows of a CSV, JSON (an array of row objects, or one object) or JSONL labels file; a leading UTF-8 byte
    order mark (as spreadsheet programs write) is ignored. CSV cells that read as JSON numbers, booleans or lists
    are parsed."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, video_column)
    if suffix == ".json":
        return _read_json(path, video_column)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, video_column)
    raise ValueError(f"{path}: labels must be a .csv, .json or .jsonl file")


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
    """Rows of a CSV file. A row whose cells do not match the header one for one is a problem, not guessed at:
    an unquoted comma inside a caption would otherwise shift every later cell into the wrong column."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        column = _video_column(path, header, video_column)
        for row in reader:
            where = f"{path.name}:{reader.line_num}"
            extra = row.pop(None, None)  # DictReader's key for the cells past the header
            missing = sum(value is None for value in row.values())
            if extra is not None or missing:
                count = len(header) + len(extra) if extra is not None else len(header) - missing
                hint = 'quote a cell holding a comma: "a, b"' if extra is not None else "write an empty cell as a,,b"
                yield LabelsRow(where, None, {}, problem=f"{where}: {count} cells for {len(header)} columns ({hint})")
                continue
            cells = {str(key): _cell(key, value) for key, value in row.items()}
            yield LabelsRow(where, row.get(column) or None, _without(cells, column), looked_for=(column,))


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


def _read_json(path: Path, video_column: str | None) -> Iterator[LabelsRow]:
    """Rows of a JSON file: an array of row objects (named ``file[index]``), or one row object. A file that
    is not one JSON value (a line per row, as JSONL, but named .json) is read as JSONL, unless it opens an
    array: then it is a broken one, and no row of it is trusted."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip().startswith("["):
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        return _read_jsonl(path, video_column)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected an array of row objects, got {type(value).__name__}")
    return _labels_rows(path, ((f"{path.name}[{index}]", row) for index, row in enumerate(value)), video_column)


def _read_jsonl(path: Path, video_column: str | None) -> Iterator[LabelsRow]:
    """Rows of a JSONL file, one object per line (named ``file:line``)."""
    with path.open(encoding="utf-8-sig") as handle:
        yield from _labels_rows(path, _jsonl_lines(path, handle), video_column)


def _jsonl_lines(path: Path, lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(``file:line``, parsed value) of each non-blank line; a line that is not JSON gives, as its value, the
    ValueError saying so (one bad line is one error, and the other rows are still read)."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            where = f"{path.name}:{number}"
            try:
                yield where, json.loads(line)
            except ValueError as error:
                yield where, ValueError(f"{where}: not valid JSON ({error})")


def _labels_rows(path: Path, values: Iterable[tuple[str, Any]], video_column: str | None) -> Iterator[LabelsRow]:
    """Labels rows from parsed JSON rows. Row objects need not share their keys, so the video column is
    ``video_column`` or else the first accepted name found in a row; rows before that one name no video. A file
    in which no row has the column is refused whole, once its rows are read, as a CSV header without one is."""
    column = video_column
    keys: set[str] = set()
    for where, row in values:
        if isinstance(row, ValueError):
            yield LabelsRow(where, None, {}, problem=str(row))
            continue
        if not isinstance(row, dict):
            yield LabelsRow(where, None, {}, problem=f"{where}: expected a JSON object for the row")
            continue
        keys.update(str(key) for key in row)
        column = column or next((name for name in _VIDEO_COLUMNS if name in row), None)
        video = row.get(column) if column is not None else None
        cells = {str(key): _json_value(value) for key, value in row.items()}
        looked_for = _VIDEO_COLUMNS if column is None else (column,)
        yield LabelsRow(
            where, None if video in (None, "") else str(video), _without(cells, column), looked_for=looked_for
        )
    if keys and (column is None or column not in keys):
        _video_column(path, sorted(keys), video_column)  # raises: no row names its video


def _without(cells: dict[str, JsonValue], column: str | None) -> dict[str, JsonValue]:
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


def _join(
    folder: Path, videos: dict[str, Path], clashing: dict[str, Path], rows: Iterator[LabelsRow]
) -> tuple[list[VideoSample], list[ItemError], int]:
    """Join labels rows to videos. Returns the samples (one per video), the errors (videos whose id is taken,
    then rows that cannot be used) and how many samples have no labels row."""
    by_path = {path.relative_to(folder).as_posix(): video_id for video_id, path in videos.items()}
    matched: dict[str, LabelsRow] = {}
    problems = [_labels_error(name, _clash_message(folder, name, holder)) for name, holder in clashing.items()]
    for row in rows:
        video_id, problem = _match_row(row, folder, videos, by_path, matched)
        if problem and (name := _normalize_name(row.video or "", folder)) in clashing:
            problem = f"{row.where}: names {row.video!r}; {_clash_message(folder, name, clashing[name])}"
        if video_id is not None:
            matched[video_id] = row
        else:
            problems.append(_labels_error(row.where, problem))
    samples = [_folder_sample(folder, video_id, path, matched.get(video_id)) for video_id, path in videos.items()]
    return samples, problems, len(videos) - len(matched)


def _labels_error(item_id: str, message: str) -> ItemError:
    return ItemError(sample_id=item_id, stage="ingest", error_type=LABELS_FILE_ERROR, message=message)


def _match_row(
    row: LabelsRow, folder: Path, videos: dict[str, Path], by_path: dict[str, str], matched: dict[str, LabelsRow]
) -> tuple[str | None, str]:
    """The id of the video a labels row names, or None and why the row cannot be used."""
    if row.problem is not None:
        return None, row.problem
    if row.video is None:
        names = ", ".join(map(repr, row.looked_for))
        under = f"any of {names}" if len(row.looked_for) > 1 else names
        return None, f"{row.where}: the row names no video (no value under {under})"
    name = _normalize_name(row.video, folder)
    video_id = by_path.get(name) or (name if name in videos else None)
    if video_id is None:
        return None, f"{row.where}: names {row.video!r}, which is not a video under {folder}"
    if video_id in matched:
        return None, f"{row.where}: labels {video_id!r} again (first at {matched[video_id].where}); row ignored"
    return video_id, ""


def _folder_sample(folder: Path, video_id: str, path: Path, row: LabelsRow | None) -> VideoSample:
    cells = dict(row.cells) if row is not None else {}
    caption = cells.pop("caption", None)
    source: dict[str, JsonValue] = {"folder": str(folder)}
    if row is not None:
        source["labels"] = row.where
    return VideoSample(
        id=video_id,
        path=str(path),
        caption=None if caption is None else str(caption),
        labels=cells,
        metadata={SOURCE_KEY: source},
    )
