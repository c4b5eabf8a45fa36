"""`run --backend openai` against a running OpenAI-compatible server gives what the local backend gives."""

from pathlib import Path

from cookbook_data.records import read_records
from cookbook_data.schemas import Prediction, VideoSample
from cookbook_data.testing import VideoSet
from cookbook_infer.backends.transformers import TransformersBackend
from cookbook_infer.run import RunConfig, run_inference
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
