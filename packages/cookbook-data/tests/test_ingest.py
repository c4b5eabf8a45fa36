import csv
import hashlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
import pytest
from pydantic import ValidationError

from cookbook_data.ingest import (
    FolderIngestConfig,
    VideoPhy2IngestConfig,
    ingest_folder,
    ingest_videophy2,
    load_videophy2,
)
from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, VideoSample
from cookbook_data.testing.http import VideoServer
from cookbook_data.testing.videos import VideoSet

LABELS = (
    "sa",
    "pc",
    "joint",
    "physics_rules_followed",
    "physics_rules_unfollowed",
    "physics_rules_cannot_be_determined",
    "human_violated_rules",
)
METADATA = ("action", "category", "is_hard", "metadata_rules", "upsampled_caption", "annotator_note")
"""The known metadata columns plus one the dataset does not document (it must be kept too)."""


# ---------------------------------------------------------------------------------------------- HTTP server


@pytest.fixture
def server(video_server: VideoServer) -> VideoServer:
    return video_server


# ------------------------------------------------------------------------------------------------ VideoPhy-2


def row(url: str, pc: int, **overrides: Any) -> dict[str, Any]:
    """A VideoPhy-2 row with every published column, plus an undocumented one."""
    values: dict[str, Any] = {
        "caption": f"a ball rolls down a ramp ({pc})",
        "video_url": url,
        "sa": 6 - pc,
        "pc": pc,
        "joint": int(pc >= 4),
        "physics_rules_followed": [f"gravity {pc}", "inertia"],
        "physics_rules_unfollowed": [f"collision {pc}"],
        "physics_rules_cannot_be_determined": ["friction"],
        "human_violated_rules": [f"object passes through ramp {pc}"],
        "action": "rolling",
        "category": "sports",
        "is_hard": pc % 2 == 0,
        "metadata_rules": f"rules text {pc}",
        "upsampled_caption": f"A red ball rolls down a wooden ramp ({pc}).",
        "annotator_note": f"note {pc}",
    }
    return values | overrides


def urls(base: str, tag: str) -> list[str]:
    names = ["h264_24fps", "h264_30fps_long", "h264_portrait_15fps", "mpeg4_10fps", "mpeg4_8fps"]
    return [f"{base}/videos/{name}.mp4?t={tag}" for name in names]


def sample_id(url: str) -> str:
    return "videophy2-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def write_copy(rows: list[dict[str, Any]], where: Path, form: str) -> Path:
    """A local copy of the dataset in one of the forms users keep offline."""
    dataset = datasets.Dataset.from_list(rows)
    if form == "parquet":
        dataset.to_parquet(str(where / "rows.parquet"))
        return where / "rows.parquet"
    if form == "jsonl":
        dataset.to_json(str(where / "rows.jsonl"), lines=True)
        return where / "rows.jsonl"
    if form == "csv":
        dataset.to_csv(str(where / "rows.csv"), index=False)
        return where / "rows.csv"
    if form == "save_to_disk":
        dataset.save_to_disk(str(where / "saved"))
        return where / "saved"
    if form == "save_to_disk_dict":
        datasets.DatasetDict({"test": dataset}).save_to_disk(str(where / "saved_dict"))
        return where / "saved_dict"
    raise AssertionError(form)


def manifest(path: Path) -> dict[str, VideoSample]:
    records = list(read_records(path, VideoSample))
    by_id = {record.id: record for record in records}
    assert len(by_id) == len(records), "a manifest holds each id once"
    return by_id


def names(folder: Path) -> list[str]:
    """File names in a folder, sorted (temporary files included: none may be left behind)."""
    return sorted(path.name for path in folder.iterdir())


def errors(path: Path) -> list[ItemError]:
    return list(read_records(path, ItemError)) if path.exists() else []


@pytest.mark.parametrize(
    ("form", "split"), [("parquet", None), ("jsonl", None), ("save_to_disk", None), ("save_to_disk_dict", "test")]
)
def test_videophy2_local_copies_keep_every_column(tmp_path: Path, form: str, split: str | None) -> None:
    rows = [row(url, pc) for pc, url in enumerate(urls("https://example.com", "cols"), start=1)]
    source = write_copy(rows, tmp_path, form)
    out = tmp_path / "out" / "manifest.jsonl"
    report = ingest_videophy2(VideoPhy2IngestConfig(source=str(source), out=out), progress=False)
    assert (report.succeeded, report.failed) == (5, 0)
    samples = manifest(out)
    assert set(samples) == {sample_id(r["video_url"]) for r in rows}
    for index, values in enumerate(rows):
        sample = samples[sample_id(values["video_url"])]
        assert sample.url == values["video_url"]
        assert sample.path is None
        assert sample.caption == values["caption"]
        assert sample.labels == {name: values[name] for name in LABELS}
        assert sample.metadata == {
            **{name: values[name] for name in METADATA},
            "source": {"dataset": str(source), "split": split, "row": index},
        }


def test_videophy2_csv_copy_is_read_with_scores_as_numbers(tmp_path: Path) -> None:
    rows = [row(url, pc) for pc, url in enumerate(urls("https://example.com", "csv"), start=1)]
    out = tmp_path / "manifest.jsonl"
    config = VideoPhy2IngestConfig(source=str(write_copy(rows, tmp_path, "csv")), split="train", out=out)
    assert ingest_videophy2(config, progress=False).succeeded == 5
    samples = manifest(out)
    first = samples[sample_id(rows[0]["video_url"])]
    assert sorted((s.labels["pc"], s.labels["sa"]) for s in samples.values()) == [(p, 6 - p) for p in range(1, 6)]
    assert all(set(s.labels) == set(LABELS) and set(METADATA) < set(s.metadata) for s in samples.values())
    assert first.metadata["source"] == {"dataset": str(tmp_path / "rows.csv"), "split": "train", "row": 0}
    assert first.caption == rows[0]["caption"] and first.metadata["annotator_note"] == "note 1"


def test_videophy2_bad_rows_are_errors_not_crashes(tmp_path: Path) -> None:
    good, *bad_urls = urls("https://example.com", "bad")
    rows = [
        row(good, 3),
        row(bad_urls[0], 3) | {"pc": 7},
        row(bad_urls[1], 3, sa=0),
        row(bad_urls[2], 3) | {"pc": None},
        row("", 2),
    ]
    out = tmp_path / "manifest.jsonl"
    report = ingest_videophy2(
        VideoPhy2IngestConfig(source=str(write_copy(rows, tmp_path, "jsonl")), out=out), progress=False
    )
    assert list(manifest(out)) == [sample_id(good)]
    found = {e.sample_id: e for e in errors(tmp_path / "manifest.errors.jsonl")}
    assert set(found) == {sample_id(bad_urls[0]), sample_id(bad_urls[1]), sample_id(bad_urls[2]), "videophy2-row-4"}
    assert {e.error_type for e in found.values()} == {"LabelError"}
    assert "`pc` must be an integer from 1 to 5, got 7" in found[sample_id(bad_urls[0])].message
    assert "`sa` must be an integer from 1 to 5, got 0" in found[sample_id(bad_urls[1])].message
    assert "`pc` must be an integer from 1 to 5, got None" in found[sample_id(bad_urls[2])].message
    assert "row 4: `video_url` is missing" in found["videophy2-row-4"].message
    assert (report.succeeded, report.failed, report.failures_by_type) == (1, 4, {"LabelError": 4})


def test_videophy2_downloads_map_each_url_to_its_own_video_whatever_the_order(
    server: VideoServer, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    served = {url: hashlib.sha256(server.routes[urlparse(url).path]).hexdigest() for url in urls(server.base, "order")}
    rows = [row(url, pc) for pc, url in enumerate(served, start=1)]
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != rows

    results = {}
    for name, ordering in (("ordered", rows), ("shuffled", shuffled)):
        (tmp_path / name).mkdir()
        out = tmp_path / name / "manifest.jsonl"
        config = VideoPhy2IngestConfig(
            source=str(write_copy(ordering, tmp_path / name, "parquet")), out=out, download=True, workers=3
        )
        report = ingest_videophy2(config, progress=False)
        assert report.succeeded == 5
        results[name] = manifest(out)
    for samples in results.values():
        for sample in samples.values():
            assert sample.url is not None and sample.path is not None
            assert Path(sample.path).is_absolute()
            assert hashlib.sha256(Path(sample.path).read_bytes()).hexdigest() == served[sample.url]
            assert sample.labels["pc"] == next(r["pc"] for r in rows if r["video_url"] == sample.url)
    ordered, reshuffled = results["ordered"], results["shuffled"]
    assert set(ordered) == set(reshuffled)
    assert {k: Path(s.path or "").name for k, s in ordered.items()} == {
        k: Path(s.path or "").name for k, s in reshuffled.items()
    }
    assert ordered[sample_id(rows[0]["video_url"])].metadata["source"]["row"] == 0  # type: ignore[index,call-overload]
    assert {s.metadata["source"]["row"] for s in reshuffled.values()} == set(range(5))  # type: ignore[index,call-overload]


def test_videophy2_rows_with_the_same_url_share_one_cached_file(server: VideoServer, tmp_path: Path) -> None:
    a, b, c = urls(server.base, "shared")[:3]
    cache = tmp_path / "cache"
    for name, rows in (("train", [row(a, 1), row(b, 2)]), ("test", [row(b, 4), row(c, 5), row(b, 3)])):
        (tmp_path / name).mkdir()
        config = VideoPhy2IngestConfig(
            source=str(write_copy(rows, tmp_path / name, "jsonl")),
            out=tmp_path / name / "manifest.jsonl",
            download=True,
            cache_dir=cache,
        )
        ingest_videophy2(config, progress=False)
    train, test = manifest(tmp_path / "train" / "manifest.jsonl"), manifest(tmp_path / "test" / "manifest.jsonl")
    assert train[sample_id(b)].path == test[sample_id(b)].path
    assert server.hits_for(b) == 1
    assert names(cache) == sorted(Path(s.path or "").name for s in [*train.values(), test[sample_id(c)]])
    # Within one dataset the same URL is the same id: the second row is reported, not silently merged.
    [duplicate] = errors(tmp_path / "test" / "manifest.errors.jsonl")
    assert (duplicate.sample_id, duplicate.error_type) == (sample_id(b), "DuplicateId")
    assert test[sample_id(b)].labels["pc"] == 4


def test_videophy2_download_failures_are_per_item_errors_and_leave_no_file(server: VideoServer, tmp_path: Path) -> None:
    good = urls(server.base, "fail")[0]
    missing = server.url("/videos/missing.mp4", "fail")
    text = server.url("/broken/not_a_video.mp4", "fail")
    cut = server.url("/cut/h264_30fps_long.mp4", "fail")
    rows = [row(good, 4), row(missing, 3), row(text, 2), row(cut, 1)]
    out = tmp_path / "manifest.jsonl"
    config = VideoPhy2IngestConfig(source=str(write_copy(rows, tmp_path, "parquet")), out=out, download=True, workers=4)
    report = ingest_videophy2(config, progress=False)
    assert list(manifest(out)) == [sample_id(good)]
    found = {e.sample_id: e for e in errors(tmp_path / "manifest.errors.jsonl")}
    assert found[sample_id(missing)].error_type == "DownloadError"
    assert "HTTP 404" in found[sample_id(missing)].message and missing in found[sample_id(missing)].message
    assert found[sample_id(text)].error_type == "UndecodableVideoError"
    assert found[sample_id(cut)].error_type == "DownloadError"
    assert "connection closed after" in found[sample_id(cut)].message
    assert report.failures_by_type == {"DownloadError": 2, "UndecodableVideoError": 1}
    assert names(tmp_path / "videos") == [Path(manifest(out)[sample_id(good)].path or "").name]


def test_videophy2_rerun_resumes_without_duplicates(server: VideoServer, tmp_path: Path) -> None:
    first, second, third = urls(server.base, "resume")[:3]
    missing = server.url("/videos/missing.mp4", "resume")
    out = tmp_path / "out" / "manifest.jsonl"

    def run(rows: list[dict[str, Any]]) -> Any:
        source = write_copy(rows, tmp_path, "parquet")
        return ingest_videophy2(VideoPhy2IngestConfig(source=str(source), out=out, download=True), progress=False)

    report = run([row(first, 1), row(missing, 2), row(second, 3)])
    assert (report.succeeded, report.failed, report.skipped) == (2, 1, 0)
    report = run([row(first, 1), row(missing, 2), row(second, 3)])
    assert (report.succeeded, report.failed, report.skipped) == (0, 1, 2)  # only the failed row is retried
    assert server.hits_for(first) == server.hits_for(second) == 1
    assert server.hits_for(missing) == 2
    report = run([row(second, 3), row(third, 4), row(first, 1)])
    assert (report.succeeded, report.skipped) == (1, 2)
    assert out.read_text().count("\n") == 3
    assert sorted(manifest(out)) == sorted([sample_id(first), sample_id(second), sample_id(third)])


def test_videophy2_rerun_with_download_fetches_the_videos_of_samples_written_without(
    server: VideoServer, tmp_path: Path
) -> None:
    first, second, third = urls(server.base, "later")[:3]
    missing = server.url("/videos/missing.mp4", "later")
    rows = [row(first, 1), row(second, 2), row(missing, 3), row(third, 4)]
    source = str(write_copy(rows, tmp_path, "parquet"))
    out = tmp_path / "out" / "manifest.jsonl"
    ingest_videophy2(VideoPhy2IngestConfig(source=source, out=out), progress=False)
    assert all(sample.path is None for sample in manifest(out).values())

    config = VideoPhy2IngestConfig(source=source, out=out, download=True)
    report = ingest_videophy2(config, progress=False)

    assert (report.succeeded, report.failed, report.skipped) == (3, 1, 0)
    samples = manifest(out)  # one record per id
    assert out.read_text().count("\n") == len(samples) == 4
    for url in (first, second, third):
        fetched = samples[sample_id(url)]
        assert fetched.path is not None and Path(fetched.path).is_file()
        assert fetched.labels["pc"] == next(r["pc"] for r in rows if r["video_url"] == url)
    assert samples[sample_id(missing)].path is None  # its download failed: kept as it was, and its error recorded
    assert [e.sample_id for e in errors(tmp_path / "out" / "manifest.errors.jsonl")] == [sample_id(missing)]
    again = ingest_videophy2(config, progress=False)
    assert (again.skipped, again.failed) == (3, 1)  # only the video still missing is tried again
    assert server.hits_for(first) == server.hits_for(second) == server.hits_for(third) == 1


def test_videophy2_rerun_with_download_fetches_a_cached_video_that_has_gone(
    server: VideoServer, tmp_path: Path
) -> None:
    chosen = urls(server.base, "gone")[:3]
    out = tmp_path / "out" / "manifest.jsonl"
    config = VideoPhy2IngestConfig(
        source=str(write_copy([row(url, pc) for pc, url in enumerate(chosen, 1)], tmp_path, "parquet")),
        out=out,
        download=True,
    )
    ingest_videophy2(config, progress=False)
    gone = Path(manifest(out)[sample_id(chosen[0])].path or "")
    gone.unlink()  # a cleaned or moved cache

    report = ingest_videophy2(config, progress=False)

    assert (report.succeeded, report.failed, report.skipped) == (1, 0, 2)
    samples = manifest(out)  # one record per id
    assert out.read_text().count("\n") == len(samples) == 3
    assert samples[sample_id(chosen[0])].path == str(gone) and gone.is_file()
    assert [server.hits_for(url) for url in chosen] == [2, 1, 1]


def test_videophy2_writes_the_resolved_config_beside_the_manifest(tmp_path: Path) -> None:
    rows = [row("https://example.com/a.mp4", 3)]
    out = tmp_path / "run" / "manifest.jsonl"
    ingest_videophy2(
        VideoPhy2IngestConfig(source=str(write_copy(rows, tmp_path, "jsonl")), out=out, limit=1), progress=False
    )
    resolved = json.loads((out.parent / RESOLVED_CONFIG).read_text())["config"]
    assert resolved["errors"] == str(tmp_path / "run" / "manifest.errors.jsonl")
    assert resolved["cache_dir"] == str(tmp_path / "run" / "videos")
    assert resolved["limit"] == 1 and resolved["download"] is False


def test_videophy2_sources_are_chosen_explicitly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        load_videophy2(str(tmp_path / "missing.parquet"))
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown data file type"):
        load_videophy2(str(tmp_path / "rows.txt"))
    rows = [row("https://example.com/a.mp4", 3)]
    saved = tmp_path / "both"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows * 2)}
    ).save_to_disk(str(saved))
    with pytest.raises(ValueError, match="several splits; choose one of train, test"):
        load_videophy2(str(saved))
    with pytest.raises(ValueError, match="no split 'val'"):
        load_videophy2(str(saved), split="val")
    dataset, split = load_videophy2(str(saved), split="test")
    assert (len(dataset), split) == (2, "test")


def test_limit_reads_only_the_first_rows(tmp_path: Path) -> None:
    rows = [row(url, pc) for pc, url in enumerate(urls("https://example.com", "limit"), start=1)]
    out = tmp_path / "manifest.jsonl"
    config = VideoPhy2IngestConfig(source=str(write_copy(rows, tmp_path, "parquet")), out=out, limit=2)
    assert ingest_videophy2(config, progress=False).total == 2
    assert list(manifest(out)) == [sample_id(r["video_url"]) for r in rows[:2]]


# ---------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("model", [VideoPhy2IngestConfig, FolderIngestConfig])
def test_configs_are_strict_flat_and_documented(model: type[VideoPhy2IngestConfig | FolderIngestConfig]) -> None:
    for name, info in model.model_fields.items():
        assert info.description, f"{model.__name__}.{name} has no description"
    with pytest.raises(ValidationError, match="outt"):
        model.model_validate({"out": "m.jsonl", "folder": "f", "outt": "typo"})
    schema = model.model_json_schema()
    assert all("$ref" not in json.dumps(field) for field in schema["properties"].values())


def test_importing_ingest_does_not_import_datasets() -> None:
    code = "import sys, cookbook_data.ingest; assert 'datasets' not in sys.modules, 'datasets imported at load'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------------ folder


@pytest.fixture
def video_folder(synthetic_videos: VideoSet, tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    good = synthetic_videos.good
    for relative, name in {
        "a.mp4": "h264_24fps",
        "sub/b.mp4": "mpeg4_10fps",
        "sub/deeper/c.MOV": "h264_portrait_15fps",
        "d.webm": "mpeg4_8fps",
        ".cache/hidden.mp4": "mpeg4_8fps",
    }.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(good[name].path, folder / relative)
    (folder / "notes.txt").write_text("not a video")
    return folder


LABEL_ROWS = [
    {"video": "a.mp4", "caption": "a square moves", "pc": 4, "sa": 5, "category": "toy"},
    {"video": "sub/b", "caption": "another square", "pc": 2, "sa": 3, "category": "toy"},
    {"video": "ghost.mp4", "caption": "not there", "pc": 1, "sa": 1, "category": "toy"},
    {"video": "./sub/b.mp4", "caption": "same video again", "pc": 5, "sa": 5, "category": "toy"},
    {"video": "d.webm", "caption": "", "pc": 3, "sa": None, "category": "toy"},
]


def write_labels(folder: Path, form: str) -> Path:
    if form == "csv":
        path = folder / "labels.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(LABEL_ROWS[0]))
            writer.writeheader()
            writer.writerows(LABEL_ROWS)
        return path
    path = folder / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in LABEL_ROWS) + "\n{not json\n")
    return path


@pytest.mark.parametrize("form", ["csv", "jsonl"])
def test_folder_ingest_joins_labels_and_keeps_unlabeled_videos(video_folder: Path, tmp_path: Path, form: str) -> None:
    labels = write_labels(tmp_path, form)
    out = tmp_path / "out" / "manifest.jsonl"
    report = ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out))
    samples = manifest(out)
    assert sorted(samples) == ["a", "d", "sub/b", "sub/deeper/c"]
    for sample in samples.values():
        assert sample.path is not None and Path(sample.path).is_absolute() and Path(sample.path).is_file()
    assert samples["sub/deeper/c"].path == str(video_folder.resolve() / "sub/deeper/c.MOV")
    assert (samples["a"].caption, samples["a"].labels) == ("a square moves", {"pc": 4, "sa": 5, "category": "toy"})
    assert samples["sub/b"].labels == {"pc": 2, "sa": 3, "category": "toy"}  # the first row for it wins
    assert samples["d"].caption in (None, "")
    assert samples["d"].labels == {"pc": 3, "sa": None, "category": "toy"}
    assert (samples["sub/deeper/c"].caption, samples["sub/deeper/c"].labels) == (None, {})
    header = 1 if form == "csv" else 0  # rows are named by their line in the file
    where = f"{labels.name}:{1 + header}"
    assert samples["a"].metadata["source"] == {"folder": str(video_folder.resolve()), "labels": where}

    problems = {e.sample_id: e.message for e in errors(tmp_path / "out" / "manifest.errors.jsonl")}
    expected = {
        f"{labels.name}:{3 + header}": "names 'ghost.mp4', which is not a video",
        f"{labels.name}:{4 + header}": f"labels 'sub/b' again (first at {labels.name}:{2 + header})",
    }
    if form == "jsonl":
        expected[f"{labels.name}:7"] = "not valid JSON"
    assert set(problems) == set(expected)
    for key, text in expected.items():
        assert text in problems[key]
    assert (report.succeeded, report.failed, report.unlabeled) == (4, len(expected), 1)
    assert "1 videos without labels" in report.summary()


def test_folder_ingest_without_labels_and_rerun_resumes(
    video_folder: Path, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    out = tmp_path / "manifest.jsonl"
    config = FolderIngestConfig(folder=video_folder, out=out)
    first = ingest_folder(config)
    assert (first.succeeded, first.unlabeled) == (4, 4)
    assert all(s.labels == {} for s in manifest(out).values())
    again = ingest_folder(config)
    assert (again.succeeded, again.skipped, again.failed) == (0, 4, 0)
    shutil.copy(synthetic_videos.good["h264_24fps"].path, video_folder / "sub" / "e.mkv")
    more = ingest_folder(config)
    assert (more.succeeded, more.skipped) == (1, 4)
    assert out.read_text().count("\n") == 5
    assert sorted(manifest(out)) == ["a", "d", "sub/b", "sub/deeper/c", "sub/e"]
    assert json.loads((tmp_path / RESOLVED_CONFIG).read_text())["config"]["errors"] == str(
        tmp_path / "manifest.errors.jsonl"
    )


def test_folder_labels_can_name_videos_by_a_chosen_column(video_folder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(f"clip,pc\n{video_folder.resolve() / 'a.mp4'},5\nsub/deeper/c,2\n")
    out = tmp_path / "manifest.jsonl"
    with pytest.raises(ValueError, match="no column naming the video"):
        ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out))
    report = ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out, video_column="clip"))
    samples = manifest(out)
    assert (samples["a"].labels, samples["sub/deeper/c"].labels) == ({"pc": 5}, {"pc": 2})
    assert (report.unlabeled, report.failed) == (2, 0)


def test_json_labels_take_the_video_column_from_the_first_row_that_has_one(video_folder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps([{"note": "exported header"}, {"id": "a", "pc": 4}, {"id": "sub/b", "pc": 2}, {"pc": 1}])
    )
    out = tmp_path / "manifest.jsonl"

    report = ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out))

    samples = manifest(out)
    assert (samples["a"].labels, samples["sub/b"].labels) == ({"pc": 4}, {"pc": 2})
    problems = {e.sample_id: e.message for e in errors(tmp_path / "manifest.errors.jsonl")}
    assert problems == {
        "labels.json[0]": "labels.json[0]: the row names no video (no value under any of 'id', 'video', 'path', "
        "'file_name')",
        "labels.json[3]": "labels.json[3]: the row names no video (no value under 'id')",
    }
    assert (report.succeeded, report.failed) == (4, 2)
    table = tmp_path / "labels.csv"
    table.write_text("clip,pc\na.mp4,4\n,3\n")
    ingest_folder(FolderIngestConfig(folder=video_folder, labels=table, out=out, video_column="clip"))
    [problem] = errors(tmp_path / "manifest.errors.jsonl")
    assert problem.message == "labels.csv:3: the row names no video (no value under 'clip')"
    labels.write_text(json.dumps([{"note": "x"}, {"clip": "a.mp4", "pc": 4}]))
    with pytest.raises(ValueError, match=r"labels\.json: no column naming the video"):
        ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out))
    with pytest.raises(ValueError, match=r"labels\.json: no column 'clips' \(columns: clip, note, pc\)"):
        ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out, video_column="clips"))


def test_videos_sharing_an_id_are_reported_not_dropped(video_folder: Path, tmp_path: Path) -> None:
    shutil.copy(video_folder / "a.mp4", video_folder / "a.mov")  # both would be id "a"
    labels = tmp_path / "labels.csv"
    labels.write_text("video,pc\na.mov,4\na.mp4,2\n")
    out = tmp_path / "manifest.jsonl"

    report = ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out))

    samples = manifest(out)
    assert samples["a"].path == str(video_folder.resolve() / "a.mov")  # the first in sorted order keeps the id
    assert samples["a"].labels == {"pc": 4}
    problems = {e.sample_id: e.message for e in errors(tmp_path / "manifest.errors.jsonl")}
    taken = f"a.mp4 is not ingested: its id is taken by {video_folder.resolve() / 'a.mov'}"
    assert taken in problems["a.mp4"]
    assert "names 'a.mp4'; " in problems["labels.csv:3"] and taken in problems["labels.csv:3"]
    assert report.failed == 2


def test_csv_answers_reach_the_manifest_as_written(video_folder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("video,answer,pc\na.mp4,1.50,4.0\nsub/b.mp4,1e3,3\nd.webm,true,5\n")
    out = tmp_path / "manifest.jsonl"

    ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out))

    samples = manifest(out)
    assert samples["a"].labels == {"answer": "1.50", "pc": 4.0}  # not 1.5: the answer's text as written
    assert samples["sub/b"].labels == {"answer": "1e3", "pc": 3}
    assert samples["d"].labels == {"answer": True, "pc": 5}


def test_a_mended_labels_file_reaches_the_manifest_on_rerun(video_folder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("video,pc\na.mp4,4\nd.wbm,2\n")  # a typo: the row names no video
    out = tmp_path / "manifest.jsonl"
    config = FolderIngestConfig(folder=video_folder, labels=labels, out=out)
    first = ingest_folder(config)
    assert (first.failed, first.unlabeled) == (1, 3)
    assert manifest(out)["d"].labels == {}

    labels.write_text("video,pc\na.mp4,4\nd.webm,2\n")
    (video_folder / "sub" / "b.mp4").unlink()
    report = ingest_folder(config)

    samples = manifest(out)
    assert (samples["a"].labels, samples["d"].labels) == ({"pc": 4}, {"pc": 2})
    assert errors(tmp_path / "manifest.errors.jsonl") == []  # the typo's error no longer holds
    assert sorted(samples) == ["a", "d", "sub/deeper/c"]  # the removed video is no longer listed
    assert (report.succeeded, report.skipped, report.failed) == (1, 2, 0)  # d changed; a and c are as they were
    assert (report.unlabeled, report.removed) == (1, 1)
    assert "1 videos without labels; 1 earlier records removed" in report.summary()
    assert not list(tmp_path.glob(".*partial"))


def test_a_csv_row_whose_cells_do_not_match_the_header_is_an_error(video_folder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        'video,caption,pc\na.mp4,a ball falls, then bounces,4\nd.webm,"quoted, fine",3\nsub/b.mp4,too short\n'
    )
    out = tmp_path / "manifest.jsonl"

    report = ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out))

    samples = manifest(out)
    assert (samples["d"].caption, samples["d"].labels) == ("quoted, fine", {"pc": 3})
    assert (samples["a"].caption, samples["a"].labels) == (None, {})  # nothing guessed from the shifted row
    assert samples["sub/b"].labels == {}
    problems = {e.sample_id: e.message for e in errors(tmp_path / "manifest.errors.jsonl")}
    assert sorted(problems) == ["labels.csv:2", "labels.csv:4"]
    assert problems["labels.csv:2"].startswith("labels.csv:2: 4 cells for 3 columns")
    assert problems["labels.csv:4"].startswith("labels.csv:4: 2 cells for 3 columns")
    assert (report.failed, report.unlabeled) == (2, 3)


LABELS_AS_WRITTEN = {
    "array.json": json.dumps([{"video": "a.mp4", "pc": 4, "caption": "sq"}, {"video": "d.webm", "pc": 2}], indent=2),
    "lines.json": '{"video": "a.mp4", "pc": 4, "caption": "sq"}\n{"video": "d.webm", "pc": 2}\n',
    "bom.jsonl": '\ufeff{"video": "a.mp4", "pc": 4, "caption": "sq"}\n{"video": "d.webm", "pc": 2}\n',
}


@pytest.mark.parametrize("name", list(LABELS_AS_WRITTEN))
def test_json_labels_are_read_in_the_form_they_are_written(video_folder: Path, tmp_path: Path, name: str) -> None:
    labels = tmp_path / name
    labels.write_text(LABELS_AS_WRITTEN[name], encoding="utf-8")
    out = tmp_path / "manifest.jsonl"

    report = ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=out))

    samples = manifest(out)
    assert (samples["a"].caption, samples["a"].labels, samples["d"].labels) == ("sq", {"pc": 4}, {"pc": 2})
    assert (report.failed, report.unlabeled) == (0, 2)
    where = "array.json[1]" if name == "array.json" else f"{name}:2"
    assert samples["d"].metadata["source"] == {"folder": str(video_folder.resolve()), "labels": where}


def test_a_broken_json_array_of_labels_is_refused_whole(video_folder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text('[{"video": "a.mp4", "pc": 4},\n {"video": "d.webm", "pc": }]\n')
    with pytest.raises(ValueError, match=r"labels\.json: not valid JSON .*line 2"):
        ingest_folder(FolderIngestConfig(folder=video_folder, labels=labels, out=tmp_path / "manifest.jsonl"))


def test_folder_ingest_follows_linked_folders_once(
    video_folder: Path, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "storage" / "more"
    elsewhere.mkdir(parents=True)
    shutil.copy(synthetic_videos.good["h264_24fps"].path, elsewhere / "e.mp4")
    (video_folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (video_folder / "sub" / "loop").symlink_to(video_folder, target_is_directory=True)  # must not loop
    out = tmp_path / "manifest.jsonl"

    ingest_folder(FolderIngestConfig(folder=video_folder, out=out))

    samples = manifest(out)
    assert sorted(samples) == ["a", "d", "linked/e", "sub/b", "sub/deeper/c"]
    assert samples["linked/e"].path == str(video_folder.resolve() / "linked" / "e.mp4")
