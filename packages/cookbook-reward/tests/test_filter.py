"""Curation by score: every sample lands in exactly one output; best-of-N keeps one per group."""

import json
import re
from pathlib import Path

import pytest

from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import read_records
from cookbook_data.schemas import ScoreKind, ScoreRecord, VideoSample
from cookbook_reward.config import FilterConfig
from cookbook_reward.filter import filter_manifest

SCORES = {"a1": 5.0, "a2": 4.0, "a3": 2.0, "b1": 4.0, "b2": 3.0, "c1": None}
EXPECTED = {"a1": 4.6, "a2": 4.4, "a3": 1.2, "b1": 3.9, "b2": 3.1, "c1": None}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    samples = [VideoSample(id=i, path=f"/v/{i}.mp4", metadata={"prompt": i[0]}) for i in [*SCORES, "unscored"]]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(s.model_dump_json() + "\n" for s in samples))
    records = [
        ScoreRecord(sample_id=i, score=s, expected_score=EXPECTED[i], score_kind="physics_likert")
        for i, s in SCORES.items()
    ]
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(r.model_dump_json() + "\n" for r in records))
    return manifest, scores


def ids(path: Path) -> list[str]:
    return [s.id for s in read_records(path, VideoSample)]


def test_bands_split_the_manifest_without_losing_a_sample(files: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, scores = files
    report = filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out"))
    out = tmp_path / "out"
    assert ids(out / "kept.jsonl") == ["a1", "a2", "b1"]
    assert ids(out / "rejected.jsonl") == ["a3"]
    assert ids(out / "borderline.jsonl") == ["b2"]
    assert ids(out / "unscored.jsonl") == ["c1", "unscored"]
    assert ids(out / "surplus.jsonl") == []
    assert sum(report.counts.values()) == len(ids(manifest))
    resolved = json.loads((out / RESOLVED_CONFIG).read_text())["config"]
    assert (resolved["keep_min"], resolved["drop_max"]) == (4.0, 2.0)  # the Likert defaults, as used


def test_best_of_n_keeps_the_best_per_group(files: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, scores = files
    out = tmp_path / "out"
    config = FilterConfig(
        manifest=manifest, scores=scores, out=out, best_of="prompt", by="expected_score", keep_min=3.5
    )
    filter_manifest(config)
    assert ids(out / "kept.jsonl") == ["a1", "b1"]
    assert ids(out / "surplus.jsonl") == ["a2"]
    assert ids(out / "borderline.jsonl") == ["b2"]


def test_overlapping_bands_and_duplicate_scores_are_refused(files: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, scores = files
    with pytest.raises(ValueError, match="drop_max"):
        FilterConfig(manifest=manifest, scores=scores, out=tmp_path, keep_min=3, drop_max=3)
    scores.write_text(scores.read_text() * 2)
    with pytest.raises(ValueError, match="more than one score for 'a1'"):
        filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out"))


def write_scores(path: Path, kinds: dict[str, ScoreKind], score: float) -> Path:
    path.write_text(
        "".join(ScoreRecord(sample_id=i, score=score, score_kind=k).model_dump_json() + "\n" for i, k in kinds.items())
    )
    return path


def test_scores_of_another_scale_need_thresholds_on_it(files: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, _ = files
    scores = write_scores(tmp_path / "yesno.jsonl", dict.fromkeys(SCORES, "reward_model_yes_no"), 0.9)
    with pytest.raises(
        ValueError, match=r"yesno.jsonl: holds reward_model_yes_no scores \(P\(\"No\" anomalies\), 0 to 1\)"
    ):
        filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out"))
    with pytest.raises(ValueError, match=r"--keep-min 0.7 --drop-max 0.3"):
        filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out", keep_min=0.7))

    filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out", keep_min=0.7, drop_max=0.3))
    assert ids(tmp_path / "out" / "kept.jsonl") == list(SCORES)
    assert ids(tmp_path / "out" / "rejected.jsonl") == []


def test_a_file_mixing_kinds_of_score_is_refused(files: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, _ = files
    scores = write_scores(tmp_path / "mixed.jsonl", {"a1": "physics_likert", "a2": "approve_reject"}, 1.0)
    with pytest.raises(ValueError, match=r"mixed.jsonl: mixes physics_likert and approve_reject scores"):
        filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out", keep_min=1, drop_max=0))


def test_filtering_by_an_expected_score_no_record_has_is_refused(files: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, _ = files
    scores = write_scores(tmp_path / "yesno.jsonl", dict.fromkeys(SCORES, "reward_model_yes_no"), 0.9)
    config = FilterConfig(
        manifest=manifest, scores=scores, out=tmp_path / "out", by="expected_score", keep_min=0.7, drop_max=0.3
    )
    with pytest.raises(ValueError, match=r"no record has an expected score \(reward_model_yes_no scores carry none"):
        filter_manifest(config)
    assert not (tmp_path / "out").exists()


def test_best_of_n_keeps_groups_apart_whose_keys_differ_in_type(tmp_path: Path) -> None:
    groups = {"n": 1, "s": "1", "s2": "1"}
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        "".join(
            VideoSample(id=i, path=f"/v/{i}.mp4", metadata={"prompt": g}).model_dump_json() + "\n"
            for i, g in groups.items()
        )
    )
    scores = write_scores(tmp_path / "scores.jsonl", dict.fromkeys(groups, "physics_likert"), 5.0)

    filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out", best_of="prompt"))

    assert ids(tmp_path / "out" / "kept.jsonl") == ["n", "s"]
    assert ids(tmp_path / "out" / "surplus.jsonl") == ["s2"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_score_that_is_not_a_finite_number_leaves_its_sample_unscored(
    files: tuple[Path, Path], tmp_path: Path, value: str
) -> None:
    manifest, scores = files
    scores.write_text(scores.read_text().replace('"score":5.0', f'"score":{value}'))  # a hand-made file

    filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out"))

    assert ids(tmp_path / "out" / "unscored.jsonl") == ["a1", "c1", "unscored"]
    assert ids(tmp_path / "out" / "kept.jsonl") == ["a2", "b1"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"keep_min": 2}, "--keep-min 2 is not above the Likert default --drop-max 2; pass a --drop-max below 2"),
        ({"drop_max": 4.5}, "--drop-max 4.5 is not below the Likert default --keep-min 4; pass a --keep-min above 4.5"),
    ],
)
def test_a_threshold_overlapping_the_likert_default_names_the_option_to_pass(
    files: tuple[Path, Path], tmp_path: Path, given: dict[str, float], message: str
) -> None:
    manifest, scores = files
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out", **given))


def test_score_records_of_samples_not_in_the_manifest_are_reported_and_a_file_of_none_is_refused(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, scores = files
    ghost = ScoreRecord(sample_id="ghost", score=5.0, score_kind="physics_likert")
    with scores.open("a") as handle:
        handle.write(ghost.model_dump_json() + "\n")
    report = filter_manifest(FilterConfig(manifest=manifest, scores=scores, out=tmp_path / "out"))
    assert report.unmatched == ["ghost"]
    assert sum(report.counts.values()) == len(ids(manifest))

    other = tmp_path / "other.jsonl"  # the scores of another manifest's videos
    other.write_text(ghost.model_dump_json() + "\n")
    with pytest.raises(ValueError, match=r"none of its 1 scored samples is in .*manifest.jsonl \(first ids: ghost\)"):
        filter_manifest(FilterConfig(manifest=manifest, scores=other, out=tmp_path / "other-out"))
    assert not (tmp_path / "other-out").exists()
