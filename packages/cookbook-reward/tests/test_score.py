"""A rerun of `cookbook-reward score` resumes only the scores of its own scorer and model."""

from pathlib import Path

import pytest

from cookbook_data.schemas import ScoreKind, ScoreRecord, VideoSample
from cookbook_reward.config import ScoreConfig
from cookbook_reward.score import score_manifest

MODEL = "nvidia/Cosmos-Reason1-7B"  # a known id: described without loading (every id is already scored)


def scored_before(tmp_path: Path, kind: ScoreKind, model: str) -> ScoreConfig:
    """A manifest whose every sample already has a ``kind`` score by ``model`` in the output."""
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(VideoSample(id=i, path=f"/v/{i}.mp4").model_dump_json() + "\n" for i in "abc"))
    out = tmp_path / "scores.jsonl"
    out.write_text(
        "".join(
            ScoreRecord(sample_id=i, score=0.9, score_kind=kind, model=model).model_dump_json() + "\n" for i in "abc"
        )
    )
    return ScoreConfig(manifest=manifest, out=out, scorer="likert", model=MODEL)


def test_a_rerun_with_another_scorer_is_refused_not_resumed(tmp_path: Path) -> None:
    config = scored_before(tmp_path, "reward_model_yes_no", MODEL)
    with pytest.raises(
        ValueError, match=r"scores.jsonl: holds reward_model_yes_no scores .* physics_likert .* new --out"
    ):
        score_manifest(config, progress=False)


def test_a_rerun_with_another_model_is_refused_not_resumed(tmp_path: Path) -> None:
    config = scored_before(tmp_path, "physics_likert", "nvidia/Cosmos-Reason2-8B")
    with pytest.raises(
        ValueError, match=f"by nvidia/Cosmos-Reason2-8B, and this run gives physics_likert scores by {MODEL}"
    ):
        score_manifest(config, progress=False)


def test_a_rerun_with_the_same_scorer_and_model_resumes(tmp_path: Path) -> None:
    config = scored_before(tmp_path, "physics_likert", MODEL)
    report = score_manifest(config, progress=False)
    assert (report.succeeded, report.skipped) == (0, 3)
