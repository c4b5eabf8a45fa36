import json
import logging
import shutil
from pathlib import Path

import pytest

from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_data.validate import PROBE_KEY, REASONS, ValidateConfig, validate_manifest


def write_manifest(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(row + "\n" for row in rows))
    return path


def sample_row(sample_id: str, path: Path | str | None, **extra: object) -> str:
    return json.dumps({"id": sample_id, "path": str(path) if path is not None else None, **extra})


@pytest.fixture
def mixed_manifest(tmp_path: Path, synthetic_videos: VideoSet) -> Path:
    good = synthetic_videos.good
    rows = [
        sample_row("good-1", good["h264_24fps"].path, labels={"pc": 4}),
        sample_row("good-2", good["mpeg4_10fps"].path),
        sample_row("good-3", good["h264_portrait_15fps"].path),
        sample_row("truncated", synthetic_videos.broken["truncated"]),
        sample_row("empty", synthetic_videos.broken["empty"]),
        sample_row("text", synthetic_videos.broken["not_a_video"]),
        sample_row("audio", synthetic_videos.broken["audio_only"]),
        sample_row("absent", tmp_path / "absent.mp4"),
        json.dumps({"id": "url-only", "url": "https://example.org/v.mp4"}),
        json.dumps({"id": "typo", "path": str(good["h264_24fps"].path), "lables": {}}),
        "{not json",
        sample_row("vfr", synthetic_videos.odd["vfr"]),
        sample_row("rotated", synthetic_videos.odd["rotated_90"]),
        sample_row("huge", synthetic_videos.odd["huge"]),
        sample_row("good-1", good["h264_24fps"].path, labels={"pc": 4}),  # the same row again
    ]
    return write_manifest(tmp_path / "manifest.jsonl", rows)


EXPECTED = {
    "truncated": "undecodable",
    "empty": "undecodable",
    "text": "undecodable",
    "audio": "undecodable",
    "absent": "missing_file",
    "url-only": "missing_file",
    "typo": "invalid_record",
    "manifest.jsonl:11": "invalid_record",
    "vfr": "variable_frame_rate",
    "rotated": "rotated",
    "huge": "resolution_too_large",
    "good-1": "DuplicateId",
}


def test_every_row_is_either_valid_or_quarantined_with_its_reason(mixed_manifest: Path) -> None:
    config = ValidateConfig(manifest=mixed_manifest, max_side=2048)
    report = validate_manifest(config, progress=False)

    valid = list(read_records(config.valid_path(), VideoSample))
    assert sorted(s.id for s in valid) == ["good-1", "good-2", "good-3"]
    quarantined = {e.sample_id: e for e in read_records(config.quarantine_path(), ItemError)}
    assert {k: v.error_type for k, v in quarantined.items()} == EXPECTED
    assert set(EXPECTED.values()) - {"DuplicateId"} <= set(REASONS)
    assert report.total == 15
    assert report.succeeded + report.failed == 15
    assert report.failures_by_type["undecodable"] == 4


def test_quarantined_rows_keep_the_line_the_row_and_a_message_naming_the_file(mixed_manifest: Path) -> None:
    config = ValidateConfig(manifest=mixed_manifest, max_side=2048)
    validate_manifest(config, progress=False)
    quarantined = {e.sample_id: e for e in read_records(config.quarantine_path(), ItemError)}
    truncated = quarantined["truncated"]
    assert truncated.details["line"] == 4
    assert isinstance(truncated.details["row"], dict)
    assert truncated.details["row"]["id"] == "truncated"
    assert truncated.message.startswith(f"{mixed_manifest}:4: ")
    assert "truncated.mp4" in truncated.message
    assert quarantined["typo"].message.endswith("lables: Extra inputs are not permitted")
    assert quarantined["manifest.jsonl:11"].details["row"] == "{not json"


def test_valid_rows_get_absolute_paths_and_probed_facts(tmp_path: Path, synthetic_videos: VideoSet) -> None:
    video = synthetic_videos.good["h264_24fps"]
    relative = Path("..") / video.path.parent.name / video.path.name
    folder = video.path.parent.parent / "manifests"
    folder.mkdir(exist_ok=True)
    manifest = write_manifest(folder / "relative.jsonl", [sample_row("rel", relative, caption="a square")])
    config = ValidateConfig(manifest=manifest, out=tmp_path / "valid.jsonl", quarantine=tmp_path / "q.jsonl")
    validate_manifest(config, progress=False)
    [sample] = read_records(tmp_path / "valid.jsonl", VideoSample)
    assert sample.path == str(video.path.resolve())
    assert sample.caption == "a square"
    assert sample.metadata[PROBE_KEY] == {
        "num_frames": 48,
        "fps": 24.0,
        "duration_s": 2.0,
        "width": 160,
        "height": 120,
        "codec": "h264",
    }
    assert (tmp_path / "config.resolved.json").exists()


def test_rows_sharing_an_id_are_judged_the_same_in_any_order(tmp_path: Path, synthetic_videos: VideoSet) -> None:
    one, other = synthetic_videos.good["h264_24fps"].path, synthetic_videos.good["mpeg4_10fps"].path
    rows = [sample_row("a", one, labels={"pc": 1}), sample_row("a", other, labels={"pc": 5}), sample_row("b", one)]
    outcomes = {}
    for name, order in (("forward", rows), ("reversed", rows[::-1])):
        config = ValidateConfig(manifest=write_manifest(tmp_path / f"{name}.jsonl", order))
        validate_manifest(config, progress=False)
        valid = [sample.id for sample in read_records(config.valid_path(), VideoSample)]
        held = sorted((e.sample_id, e.error_type) for e in read_records(config.quarantine_path(), ItemError))
        outcomes[name] = valid, held
    assert outcomes["forward"] == outcomes["reversed"] == (["b"], [("a", "DuplicateId"), ("a", "conflicting_id")])
    [conflict] = [
        e for e in read_records(tmp_path / "forward.quarantine.jsonl", ItemError) if e.error_type != "DuplicateId"
    ]
    assert conflict.message == (
        f"{tmp_path / 'forward.jsonl'}:1: id 'a' is on lines 1, 2, whose rows differ in labels, path; none is used, "
        "as which is right cannot be told: keep one"
    )
    assert conflict.details["row"] == json.loads(rows[0])

    write_manifest(tmp_path / "forward.jsonl", rows[1:])  # mended: the wrong copy removed
    validate_manifest(ValidateConfig(manifest=tmp_path / "forward.jsonl"), progress=False)
    assert [s.id for s in read_records(tmp_path / "forward.valid.jsonl", VideoSample)] == ["b", "a"]


def test_a_rerun_judges_a_copy_added_since_as_a_first_run_does(tmp_path: Path, synthetic_videos: VideoSet) -> None:
    one, other = synthetic_videos.good["h264_24fps"].path, synthetic_videos.good["mpeg4_10fps"].path
    config = ValidateConfig(manifest=write_manifest(tmp_path / "m.jsonl", [sample_row("a", one, labels={"pc": 1})]))
    validate_manifest(config, progress=False)
    assert [s.id for s in read_records(config.valid_path(), VideoSample)] == ["a"]
    write_manifest(config.manifest, [sample_row("a", one, labels={"pc": 1}), sample_row("a", other, labels={"pc": 5})])
    validate_manifest(config, progress=False)
    assert list(read_records(config.valid_path(), VideoSample)) == []  # the earlier record is no longer right
    held = sorted((e.sample_id, e.error_type) for e in read_records(config.quarantine_path(), ItemError))
    assert held == [("a", "DuplicateId"), ("a", "conflicting_id")]


def test_a_row_whose_id_is_an_unreadable_rows_name_is_quarantined_not_a_crash(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "oops", \n' + json.dumps({"schema_version": 1, "id": "m.jsonl:1", "path": "x"}) + "\n")
    config = ValidateConfig(manifest=manifest)
    validate_manifest(config, progress=False)
    held = sorted((e.sample_id, e.error_type) for e in read_records(config.quarantine_path(), ItemError))
    assert held == [("m.jsonl:1", "DuplicateId"), ("m.jsonl:1", "conflicting_id")]
    assert list(read_records(config.valid_path(), VideoSample)) == []


def test_probed_facts_never_replace_the_rows_own_metadata(tmp_path: Path, synthetic_videos: VideoSet) -> None:
    video = synthetic_videos.good["h264_24fps"].path
    own = {"video": "drone footage, take 3", "category": "aerial"}
    manifest = write_manifest(tmp_path / "m.jsonl", [sample_row("a", video, metadata=own)])
    config = ValidateConfig(manifest=manifest)
    validate_manifest(config, progress=False)
    [sample] = read_records(config.valid_path(), VideoSample)
    assert {key: sample.metadata[key] for key in own} == own
    facts = sample.metadata[PROBE_KEY]
    assert isinstance(facts, dict) and facts["num_frames"] == 48

    again = ValidateConfig(manifest=config.valid_path())  # a valid manifest validated again: facts replaced, not nested
    validate_manifest(again, progress=False)
    [twice] = read_records(again.valid_path(), VideoSample)
    assert twice.metadata == sample.metadata


def test_limits_are_settings(mixed_manifest: Path, tmp_path: Path) -> None:
    config = ValidateConfig(
        manifest=mixed_manifest,
        out=tmp_path / "v.jsonl",
        quarantine=tmp_path / "q.jsonl",
        min_duration_s=2.5,
        allow_rotated=True,
        allow_variable_frame_rate=True,
        max_side=8192,
    )
    validate_manifest(config, progress=False)
    reasons = {(e.sample_id, e.error_type) for e in read_records(tmp_path / "q.jsonl", ItemError)}
    assert {("good-1", "too_short"), ("good-1", "DuplicateId"), ("good-3", "too_short")} <= reasons
    assert not any(sample_id == "good-2" for sample_id, _ in reasons)  # 3 s long
    for name, reason in (("rotated", "rotated"), ("vfr", "variable_frame_rate"), ("huge", "resolution_too_large")):
        assert (name, reason) not in reasons


def test_a_rerun_checks_nothing_twice(mixed_manifest: Path) -> None:
    config = ValidateConfig(manifest=mixed_manifest, max_side=2048)
    validate_manifest(config, progress=False)
    before = (config.valid_path().read_text(), config.quarantine_path().read_text())
    report = validate_manifest(config, progress=False)
    assert report.succeeded == 0
    assert report.skipped == 12  # all but the two rows whose video is missing, which are looked for again
    assert report.failures_by_type == {"missing_file": 2, "DuplicateId": 1}
    after = (config.valid_path().read_text(), config.quarantine_path().read_text())
    assert after[0] == before[0]
    # The duplicate-id notice is given anew (the input still holds the same id twice) and replaces the old one.
    assert after[1].count('"DuplicateId"') == 1
    assert sorted(after[1].splitlines()) == sorted(before[1].splitlines())


def test_a_rerun_takes_a_missing_video_that_has_appeared(mixed_manifest: Path, synthetic_videos: VideoSet) -> None:
    config = ValidateConfig(manifest=mixed_manifest, max_side=2048)
    validate_manifest(config, progress=False)
    (mixed_manifest.parent / "absent.mp4").write_bytes(synthetic_videos.good["h264_24fps"].path.read_bytes())

    report = validate_manifest(config, progress=False)

    assert report.succeeded == 1
    assert "absent" in {sample.id for sample in read_records(config.valid_path(), VideoSample)}
    quarantined = [e.sample_id for e in read_records(config.quarantine_path(), ItemError)]
    assert "absent" not in quarantined
    assert quarantined.count("url-only") == 1  # still missing: quarantined once, as before


def test_a_repeated_id_whose_video_was_missing_is_checked_again(tmp_path: Path, synthetic_videos: VideoSet) -> None:
    x, y = tmp_path / "x.mp4", tmp_path / "y.mp4"
    manifest = write_manifest(tmp_path / "m.jsonl", [sample_row("x", x), sample_row("y", y), sample_row("x", x)])
    config = ValidateConfig(manifest=manifest)
    first = validate_manifest(config, progress=False)
    assert first.failures_by_type == {"missing_file": 2, "DuplicateId": 1}
    shutil.copy(synthetic_videos.good["h264_24fps"].path, x)
    shutil.copy(synthetic_videos.good["mpeg4_10fps"].path, y)

    report = validate_manifest(config, progress=False)

    assert (report.succeeded, report.skipped) == (2, 0)
    assert sorted(sample.id for sample in read_records(config.valid_path(), VideoSample)) == ["x", "y"]
    quarantined = [(e.sample_id, e.error_type) for e in read_records(config.quarantine_path(), ItemError)]
    assert quarantined == [("x", "DuplicateId")]  # the input still repeats x; its missing file is found


def test_a_row_whose_text_is_not_unicode_is_quarantined_and_the_others_validated(
    tmp_path: Path, synthetic_videos: VideoSet
) -> None:
    shutil.copy(synthetic_videos.good["h264_24fps"].path, tmp_path / "clip.mp4")
    rows = ['{"id": "a", "path": "clip.mp4", "caption": "half an emoji \\ud83d"}', sample_row("b", "clip.mp4")]
    config = ValidateConfig(manifest=write_manifest(tmp_path / "m.jsonl", rows))

    report = validate_manifest(config, progress=False)

    assert (report.succeeded, report.failed) == (1, 1)
    assert [sample.id for sample in read_records(config.valid_path(), VideoSample)] == ["b"]
    [error] = read_records(config.quarantine_path(), ItemError)
    assert (error.sample_id, error.error_type) == ("a", "invalid_record")
    assert error.message.startswith(f"{config.manifest}:1: ")


def test_rows_holding_lone_surrogates_are_quarantined_and_checked_again_once_mended(
    tmp_path: Path, synthetic_videos: VideoSet
) -> None:
    shutil.copy(synthetic_videos.good["h264_24fps"].path, tmp_path / "clip.mp4")
    rows = [
        '{"id": "a", "path": "clip.mp4", "caption": "half an emoji \\ud83d"}',  # quarantined without its row
        '{"id": "b\\ud83d", "path": "clip.mp4"}',  # an id UTF-8 cannot hold
        '{"id": "c", "path": "clip.mp4", "fps": "bad"}',
        sample_row("d", "clip.mp4"),
    ]
    config = ValidateConfig(manifest=write_manifest(tmp_path / "m.jsonl", rows))
    assert (validate_manifest(config, progress=False).failed, _valid_ids(config)) == (3, ["d"])

    rows[0] = '{"id": "a", "path": "clip.mp4", "caption": "a whole emoji \\ud83d\\ude00"}'
    rows[2] = '{"id": "c", "path": "clip.mp4", "caption": "half again \\ud83d"}'  # changed, still unreadable
    write_manifest(config.manifest, rows)
    report = validate_manifest(config, progress=False)

    assert (report.succeeded, report.failed, _valid_ids(config)) == (1, 2, ["d", "a"])
    # their lines could not keep the rows, so a change cannot be seen: they are checked on every run, one line each
    for _ in range(2):
        quarantine = [(e.sample_id, e.error_type) for e in read_records(config.quarantine_path(), ItemError)]
        assert sorted(quarantine) == [("b\\ud83d", "invalid_record"), ("c", "invalid_record")]
        report = validate_manifest(config, progress=False)
        assert (report.skipped, report.failed) == (2, 2)


def _valid_ids(config: ValidateConfig) -> list[str]:
    return [sample.id for sample in read_records(config.valid_path(), VideoSample)]


def test_a_row_holding_nan_or_infinity_is_not_taken_for_a_changed_one(
    tmp_path: Path, synthetic_videos: VideoSet, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copy(synthetic_videos.good["h264_24fps"].path, tmp_path / "clip.mp4")
    broken = json.dumps(str(synthetic_videos.broken["empty"]))
    rows = [  # as json.dumps writes a missing value; the outputs hold null for them
        '{"id": "nan", "path": "clip.mp4", "labels": {"pc": NaN}}',
        '{"id": "inf", "path": "clip.mp4", "caption": "x", "metadata": {"score": 1e400}}',
        '{"id": "broken", "path": ' + broken + ', "labels": {"pc": -Infinity}}',
    ]
    config = ValidateConfig(manifest=write_manifest(tmp_path / "m.jsonl", rows))
    validate_manifest(config, progress=False)
    with caplog.at_level(logging.WARNING, logger="cookbook_data.validate"):
        report = validate_manifest(config, progress=False)
    assert (report.succeeded, report.failed, report.skipped, caplog.records) == (0, 0, 3, [])


def test_a_rerun_checks_again_the_rows_changed_since_they_were_checked(
    tmp_path: Path, synthetic_videos: VideoSet, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copy(synthetic_videos.good["h264_24fps"].path, tmp_path / "clip.mp4")
    rows = [
        sample_row("same", "clip.mp4", labels={"pc": 3}),  # relative: its valid record names the resolved path
        sample_row("relabelled", "clip.mp4", labels={"pc": 3}),
        json.dumps({"id": "mended", "path": "clip.mp4", "lables": {"pc": 2}}),
        sample_row("broken", synthetic_videos.broken["empty"]),
        sample_row("repointed", "clip.mp4", labels={"pc": 4}),
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    config = ValidateConfig(manifest=manifest)
    validate_manifest(config, progress=False)
    again = ValidateConfig(  # rows holding probed facts already
        manifest=config.valid_path(), out=tmp_path / "again" / "valid.jsonl", quarantine=tmp_path / "again" / "q.jsonl"
    )
    validate_manifest(again, progress=False)
    with caplog.at_level(logging.WARNING, logger="cookbook_data.validate"):
        assert validate_manifest(config, progress=False).skipped == 5
        assert validate_manifest(again, progress=False).skipped == 3
    assert caplog.records == []

    rows[1] = sample_row("relabelled", "clip.mp4", labels={"pc": 5})
    rows[2] = json.dumps({"id": "mended", "path": "clip.mp4", "labels": {"pc": 2}})
    rows[4] = sample_row("repointed", synthetic_videos.broken["empty"], labels={"pc": 4})
    write_manifest(manifest, rows)
    with caplog.at_level(logging.WARNING, logger="cookbook_data.validate"):
        report = validate_manifest(config, progress=False)
    assert (report.succeeded, report.failed, report.skipped) == (2, 1, 2)
    [warning] = caplog.records
    assert warning.getMessage() == (
        f"{manifest}: 3 rows changed since an earlier run checked them ('mended', 'relabelled', 'repointed'); "
        "checking them again"
    )
    valid, quarantine = config.valid_path(), config.quarantine_path()
    labels = {sample.id: sample.labels for sample in read_records(valid, VideoSample)}
    assert labels == {"same": {"pc": 3}, "relabelled": {"pc": 5}, "mended": {"pc": 2}}
    assert len(valid.read_text().splitlines()) == 3  # one record per row: the earlier ones are gone
    quarantined = {error.sample_id: error.error_type for error in read_records(quarantine, ItemError)}
    assert quarantined == {"broken": "undecodable", "repointed": "undecodable"}

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cookbook_data.validate"):
        report = validate_manifest(config, progress=False)
    assert (report.succeeded, report.failed, report.skipped, caplog.records) == (0, 0, 5, [])
