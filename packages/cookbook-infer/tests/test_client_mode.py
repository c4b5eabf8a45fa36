"""`run --backend openai` against a running OpenAI-compatible server gives what the local backend gives."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cookbook_data.jobs import RESOLVED_CONFIG
from cookbook_data.records import read_records
from cookbook_data.schemas import Prediction, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.backends.transformers import TransformersBackend
from cookbook_infer.cli import app
from cookbook_infer.run import RunConfig, run_inference
from cookbook_infer.testing.backends import FixedAnswers
from cookbook_infer.testing.pytest_plugin import TinyCheckpoints
from cookbook_infer.testing.servers import serving


def test_run_through_the_server_equals_run_in_process(
    tiny_checkpoints: TinyCheckpoints, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    model = str(tiny_checkpoints("reason2"))
    names = ["h264_24fps", "mpeg4_10fps", "h264_portrait_15fps"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(VideoSample(id=n, path=str(synthetic_videos.good[n].path)).model_dump_json() + "\n" for n in names)
    )
    common = {"model": model, "manifest": manifest, "temperature": 0.0, "max_new_tokens": 6, "batch_size": 2}
    backend = TransformersBackend(model)

    local = RunConfig(out=tmp_path / "local.jsonl", **common)
    run_inference(local, backend=backend, progress=False)
    with serving(backend, media_roots=[synthetic_videos.root], model_id=model) as url:
        remote = RunConfig(out=tmp_path / "remote.jsonl", backend="openai", base_url=f"{url}/v1", **common)
        report = run_inference(remote, progress=False)

    assert report.succeeded == 3
    by_id = {p.sample_id: p for p in read_records(local.out, Prediction)}
    for prediction in read_records(remote.out, Prediction):
        expected = by_id[prediction.sample_id]
        assert (prediction.raw_text, prediction.num_generated_tokens) == (
            expected.raw_text,
            expected.num_generated_tokens,
        )


def test_a_server_wanting_a_key_gets_it_from_the_key_file_and_a_run_refused_by_it_exits_1(
    synthetic_videos: VideoSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(VideoSample(id=n, path=str(v.path)).model_dump_json() + "\n" for n, v in synthetic_videos.good.items())
    )
    key_file = tmp_path / "key.txt"
    key_file.write_text("secret\n")  # as `echo secret > key.txt` writes it
    with serving(FixedAnswers(), media_roots=[synthetic_videos.root], api_key="secret") as url:
        client = [
            "run",
            str(manifest),
            "--model",
            FixedAnswers().model_id,
            "--backend",
            "openai",
            "--base-url",
            f"{url}/v1",
        ]
        refused = CliRunner().invoke(app, [*client, "--out", str(tmp_path / "refused.jsonl")])
        with_key = CliRunner().invoke(
            app, [*client, "--out", str(tmp_path / "p.jsonl"), "--api-key-file", str(key_file)]
        )

    assert refused.exit_code == 1, refused.output
    assert "failed: ServerError" in refused.output
    assert with_key.exit_code == 0, with_key.output
    assert {p.answer for p in read_records(tmp_path / "p.jsonl", Prediction)} == {"4"}
    resolved = (tmp_path / RESOLVED_CONFIG).read_text()
    assert json.loads(resolved)["config"]["run"]["api_key_file"] == str(key_file)
    assert "secret" not in resolved
