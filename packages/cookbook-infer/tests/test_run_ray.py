"""`cookbook-infer run` on the Ray engine gives the predictions and errors the local engine gives."""

import json
from pathlib import Path

import pytest

from cookbook_data.engines import RayEngineConfig
from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, Prediction, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.run import RunConfig, run_inference
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints

pytestmark = pytest.mark.ray


def comparable(path: Path) -> dict[str, dict[str, object]]:
    """Predictions by sample id, without the measured latency."""
    return {p.sample_id: p.model_dump(exclude={"latency_s"}) for p in read_records(path, Prediction)}


def test_greedy_predictions_and_errors_are_the_same_on_both_engines(
    ray_cluster: str, tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    samples = [VideoSample(id=name, path=str(video.path)) for name, video in synthetic_videos.good.items()]
    samples += [VideoSample(id=kind, path=str(path)) for kind, path in synthetic_videos.broken.items()]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(s.model_dump_json() + "\n" for s in samples))
    common = {"model": str(tiny_checkpoints("reason1")), "manifest": manifest, "max_new_tokens": 4, "temperature": 0}
    common |= {"nframes": 2, "device": "cpu", "batch_size": 4}
    local = RunConfig.model_validate({**common, "out": tmp_path / "local" / "p.jsonl"})
    engine = {"kind": "ray", "actors": 1}
    on_ray = RunConfig.model_validate({**common, "out": tmp_path / "ray" / "p.jsonl", "engine": engine})
    assert isinstance(on_ray.engine, RayEngineConfig)

    local_report = run_inference(local, progress=False)
    ray_report = run_inference(on_ray, progress=False)

    predictions = comparable(on_ray.out)
    assert predictions == comparable(local.out)
    assert sorted(predictions) == sorted(synthetic_videos.good)
    errors = {e.sample_id: e for e in read_records(on_ray.errors_path(), ItemError)}
    assert errors == {e.sample_id: e for e in read_records(local.errors_path(), ItemError)}
    assert sorted(errors) == sorted(synthetic_videos.broken)  # corrupt videos fail per item on the cluster too
    assert {e.error_type for e in errors.values()} == {"VideoDecodeError"}
    assert (ray_report.succeeded, ray_report.failed) == (local_report.succeeded, local_report.failed)

    resolved = [json.loads((c.out.parent / RESOLVED_CONFIG).read_text())["config"] for c in (local, on_ray)]
    assert resolved[1]["run"].pop("engine") == RayEngineConfig(actors=1).model_dump()
    assert resolved[0]["run"].pop("engine") == {"kind": "local"}
    for run in (r["run"] for r in resolved):
        run.pop("out")
    assert resolved[0] == resolved[1]
