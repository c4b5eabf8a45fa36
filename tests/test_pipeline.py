"""The whole pipeline on CPU, stage by stage through the command lines, every hand-off a record file.

ingest a labelled folder -> validate (broken files quarantined) -> build SFT and RL datasets -> SFT with the
local backend on a tiny checkpoint -> inference with the trained checkpoint -> reward scoring (Likert with the
expected score) and the trajectory verifier -> curation filter -> VideoPhy-2 metrics and an HTML report; then
the same scoring through the running reward service over HTTP.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, Prediction, ScoreRecord, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_reward.testing import straight_drive

LABELS = {"h264_24fps": 1, "h264_portrait_15fps": 3, "mpeg4_8fps": 5}
"""The labelled videos and their physical-plausibility scores (three answers the model must learn apart)."""
BROKEN = ("truncated", "not_a_video")
PIXELS = 16 * 28 * 28
"""Frame area: 16 visual tokens per frame pair, small enough for CPU training."""
PROMPT = 'system_prompt: "You are a helpful video analyzer."\nuser_prompt: "Rate the physics from 1 to 5."\n'
VISION = ["--set", "nframes=2", "--set", f"max_pixels={PIXELS}"]
"""The frames of the dataset build, given again at inference and scoring: train/eval parity (the videos are
larger than the pixel budget, so the frame size is the same without a minimum)."""


def run(package: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    module = package.replace("-", "_")
    command = [sys.executable, "-m", module, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    assert result.returncode == 0, f"{package} {' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_the_pipeline_end_to_end(tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, tmp_path: Path) -> None:
    # A labelled folder of videos, two of them broken.
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in LABELS:
        shutil.copy(synthetic_videos.good[name].path, videos / f"{name}.mp4")
    for name in BROKEN:
        shutil.copy(synthetic_videos.broken[name], videos / f"{name}.mp4")
    rows = [f"{name},{label},A square moves." for name, label in LABELS.items()]
    (tmp_path / "labels.csv").write_text("id,pc,caption\n" + "\n".join(rows) + "\n")
    (tmp_path / "prompt.yaml").write_text(PROMPT)
    data = tmp_path / "data"

    # Data: ingest, validate (broken files quarantined), build the datasets.
    run(
        "cookbook-data", "ingest", "folder", videos, "--labels", "labels.csv", "--out", data / "all.jsonl", cwd=tmp_path
    )
    assert len(list(read_records(data / "all.jsonl", VideoSample))) == 5
    run("cookbook-data", "validate", data / "all.jsonl", cwd=tmp_path)
    valid = data / "all.valid.jsonl"
    assert sorted(s.id for s in read_records(valid, VideoSample)) == sorted(LABELS)
    assert sorted(e.sample_id for e in read_records(data / "all.quarantine.jsonl", ItemError)) == sorted(BROKEN)
    build = ["--prompt", "prompt.yaml", "--patch-factor", "28", *VISION, "--set", "val_fraction=0"]
    build += ["--set", "total_pixels=null"]
    run("cookbook-data", "build-sft", valid, "--out", data / "sft", *build, cwd=tmp_path)
    run("cookbook-data", "build-rl", valid, "--out", data / "rl", *build, cwd=tmp_path)
    assert (data / "rl" / "build_info.json").exists()

    # Train: SFT with the local backend; the export is a plain Hugging Face checkpoint.
    recipe = tmp_path / "sft.toml"
    recipe.write_text(
        f'kind = "sft"\nmodel = "{tiny_checkpoints("reason1")}"\ndataset = "{data / "sft"}"\n'
        f'output_dir = "{tmp_path / "run"}"\nlr = 5e-3\nweight_decay = 0.0\nepochs = 60\nbatch_size = 3\n'
        'mini_batch = 3\ngradient_checkpointing = false\nsave_every = 1000\n\n[local]\ndevice = "cpu"\n'
    )
    run("cookbook-train", "sft", recipe, "--backend", "local", cwd=tmp_path)
    model = tmp_path / "run" / "final"
    assert (model / "config.json").exists()

    # Inference with the trained checkpoint: it answers each video with its label.
    infer: list[str | Path] = ["--model", model, "--prompt", "prompt.yaml", "--temperature", "0", "--device", "cpu"]
    infer += VISION
    run("cookbook-infer", "run", valid, "--out", tmp_path / "preds.jsonl", *infer, cwd=tmp_path)
    predictions = {p.sample_id: p for p in read_records(tmp_path / "preds.jsonl", Prediction)}
    assert {name: p.answer for name, p in predictions.items()} == {name: str(v) for name, v in LABELS.items()}

    # Reward: Likert scores with the expected score from the answer token's probabilities.
    score: list[str | Path] = ["--scorer", "likert", "--model", model, "--temperature", "0", "--device", "cpu"]
    score += ["--set", "prompt=prompt.yaml", *VISION]
    run("cookbook-reward", "score", valid, "--out", tmp_path / "scores.jsonl", *score, cwd=tmp_path)
    scores = {s.sample_id: s for s in read_records(tmp_path / "scores.jsonl", ScoreRecord)}
    assert {name: s.score for name, s in scores.items()} == {name: float(v) for name, v in LABELS.items()}
    for name, record in scores.items():
        assert record.expected_score is not None
        assert abs(record.expected_score - LABELS[name]) < 1.0  # the model is sure of what it learnt

    # The trajectory verifier as a scorer: one smooth plan, one that brakes too hard.
    plans = {"smooth": straight_drive(8.0), "brake": straight_drive(10.0, brake_at=20)}
    samples = [VideoSample(id=n, path=f"/clips/{n}.mp4", metadata={"trajectory": p}) for n, p in plans.items()]
    (tmp_path / "plans.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in samples))
    run("cookbook-reward", "score", "plans.jsonl", "--scorer", "trajectory", "--out", "plan_scores.jsonl", cwd=tmp_path)
    plan_scores = {s.sample_id: s.score for s in read_records(tmp_path / "plan_scores.jsonl", ScoreRecord)}
    assert plan_scores["smooth"] == 1.0
    assert plan_scores["brake"] is not None and plan_scores["brake"] < 1.0

    # Curation: keep >= 4, reject <= 2, nothing lost.
    run("cookbook-reward", "filter", valid, "--scores", "scores.jsonl", "--out", "curated", cwd=tmp_path)
    kept = [s.id for s in read_records(tmp_path / "curated" / "kept.jsonl", VideoSample)]
    rejected = [s.id for s in read_records(tmp_path / "curated" / "rejected.jsonl", VideoSample)]
    assert (kept, rejected) == (["mpeg4_8fps"], ["h264_24fps"])

    # Evaluation: VideoPhy-2 metrics and an HTML report.
    run(
        "cookbook-eval", "videophy2", "--manifest", valid, "--predictions", "preds.jsonl", "--out", "eval", cwd=tmp_path
    )
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["likert"]["exact_accuracy"]["value"] == 1.0
    run("cookbook-eval", "report", "eval", "--out", "eval/report.html", cwd=tmp_path)
    assert "<img" in (tmp_path / "eval" / "report.html").read_text()

    # The same scores through the reward service over HTTP.
    from cookbook_infer.testing.servers import serving_app
    from cookbook_reward.config import RewardServiceSettings, ScorerConfig
    from cookbook_reward.scorers import build_scorer
    from cookbook_reward.service import create_app

    config = ScorerConfig(
        model=str(model),
        scorer="likert",
        prompt=str(tmp_path / "prompt.yaml"),
        temperature=0,
        device="cpu",
        nframes=2,
        max_pixels=PIXELS,
    )
    scorer = build_scorer(config, tmp_path)
    settings = RewardServiceSettings(media_roots=[videos])
    items = [{"id": name, "video": str(videos / f"{name}.mp4")} for name in LABELS]
    with serving_app(create_app(scorer, settings)) as url:
        results = httpx.post(f"{url}/v1/score", json={"items": items}, timeout=300).json()["results"]
    for result in results:
        record = scores[result["id"]]
        assert result["score"] == record.score
        assert result["expected_score"] == pytest.approx(record.expected_score, abs=1e-4)
        assert record.expected_score is not None
        assert result["reward"] == pytest.approx((record.expected_score - 1) / 4, abs=1e-4)
