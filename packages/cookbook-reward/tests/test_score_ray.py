"""`cookbook-reward score --engine ray` gives the scores and errors of the local engine; Ray stays optional."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, ScoreRecord, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_reward.config import ScoreConfig
from cookbook_reward.score import score_manifest


@pytest.mark.ray
def test_yes_no_scores_and_errors_are_the_same_on_both_engines(
    ray_cluster: str, tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    samples = [VideoSample(id=name, path=str(video.path)) for name, video in synthetic_videos.good.items()]
    samples.insert(2, VideoSample(id="truncated", path=str(synthetic_videos.broken["truncated"])))
    samples.append(VideoSample(id="not_a_video", path=str(synthetic_videos.broken["not_a_video"])))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(s.model_dump_json() + "\n" for s in samples))
    model = str(tiny_checkpoints("reason1"))
    local = ScoreConfig(manifest=manifest, out=tmp_path / "local" / "s.jsonl", scorer="yesno", model=model, nframes=2)
    score_manifest(local.model_copy(update={"device": "cpu", "batch_size": 3}), progress=False)

    out = tmp_path / "ray" / "s.jsonl"
    args = ["score", str(manifest), "--out", str(out), "--scorer", "yesno", "--model", model, "--nframes", "2"]
    args += ["--device", "cpu", "--batch-size", "3", "--engine", "ray", "--address", ray_cluster]
    args += ["--set", "engine.actors=1"]
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_reward", *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "5 done, 2 failed" in result.stdout

    scores = {r.sample_id: r for r in read_records(out, ScoreRecord)}
    reference = {r.sample_id: r for r in read_records(local.out, ScoreRecord)}
    assert sorted(scores) == sorted(reference) == sorted(synthetic_videos.good)
    for key, record in scores.items():
        assert record.score == pytest.approx(reference[key].score, abs=1e-6)
        assert record.model_dump(exclude={"score", "probabilities", "rewards"}) == reference[key].model_dump(
            exclude={"score", "probabilities", "rewards"}
        )
    errors = sorted(read_records(out.with_name("s.errors.jsonl"), ItemError), key=lambda e: e.sample_id)
    assert errors == sorted(read_records(local.errors_path(), ItemError), key=lambda e: e.sample_id)
    assert [(e.sample_id, e.stage, e.error_type) for e in errors] == [
        ("not_a_video", "reward", "VideoDecodeError"),
        ("truncated", "reward", "VideoDecodeError"),
    ]
    resolved = json.loads((out.parent / RESOLVED_CONFIG).read_text())["config"]
    assert resolved["score"]["engine"]["address"] == ray_cluster
    assert resolved["prompt"].startswith("reason1_reward_yesno@")


def test_the_reward_command_line_and_service_modules_do_not_import_ray() -> None:
    code = (
        "import sys, cookbook_reward.cli, cookbook_reward.config, cookbook_reward.score, cookbook_reward.serve_ray;"
        "print(sum(m == 'ray' or m.startswith('ray.') for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0"


def test_replicas_reserve_a_gpu_only_where_the_cluster_has_gpus_and_a_model_runs_in_them() -> None:
    from cookbook_reward.config import ReplicaSettings, RewardServiceSettings, ScorerConfig, ServeConfig
    from cookbook_reward.serve_ray import deployment_options

    scorer = ScorerConfig(scorer="yesno", model="nvidia/Cosmos-Reason1-7B-Reward")
    service = RewardServiceSettings(max_queue=32, max_batch_size=8)
    fixed = ServeConfig(scorer=scorer, service=service, ray=ReplicaSettings(replicas=3))
    on_cpus = deployment_options(fixed, cluster_gpus=0)
    assert (on_cpus["num_replicas"], on_cpus["ray_actor_options"]) == (3, {"num_cpus": 1.0})
    assert (on_cpus["max_ongoing_requests"], on_cpus["max_queued_requests"]) == (40, 32)
    assert deployment_options(fixed, cluster_gpus=8)["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}
    for no_model_here in (
        ScorerConfig(scorer="trajectory"),
        ScorerConfig(scorer="critic", model="nvidia/Cosmos-Reason1-7B", backend="openai"),
    ):
        elsewhere = fixed.model_copy(update={"scorer": no_model_here})
        assert deployment_options(elsewhere, cluster_gpus=8)["ray_actor_options"] == {"num_cpus": 1.0}
    chosen = fixed.model_copy(update={"ray": ReplicaSettings(replicas=3, gpus_per_replica=0.5)})
    assert deployment_options(chosen, cluster_gpus=0)["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.5}

    scaling = ServeConfig(scorer=scorer, service=service, ray=ReplicaSettings(min_replicas=1, max_replicas=6))
    options = deployment_options(scaling, cluster_gpus=8)
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 6, "target_ongoing_requests": 8}
    with pytest.raises(ValueError, match="not both"):
        ReplicaSettings(replicas=2, max_replicas=4)
    with pytest.raises(ValueError, match="above max_replicas"):
        ReplicaSettings(min_replicas=5, max_replicas=4)
