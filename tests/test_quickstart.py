"""The README's main job works as written: a tiny checkpoint critiques the shipped sample videos."""

import os
import subprocess
import sys
from pathlib import Path

from cookbook_data.records import read_records
from cookbook_data.samples import sample_videos
from cookbook_data.schemas import Prediction

BIN = Path(sys.executable).parent
README = Path(__file__).parents[1] / "README.md"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "200"})


def test_readme_main_job_writes_one_prediction_per_sample_video(tmp_path: Path) -> None:
    main_job = (
        'cookbook-infer generate --model "$(uv run cookbook-infer make-tiny-model tiny-reason2/)" --max-new-tokens'
    )

    assert main_job in README.read_text()

    built = run(str(BIN / "cookbook-infer"), "make-tiny-model", str(tmp_path / "tiny-reason2"))
    assert built.returncode == 0, built.stderr
    out = tmp_path / "predictions.jsonl"
    result = run(
        str(BIN / "cookbook-infer"),
        "generate",
        "--model",
        built.stdout.strip(),
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr

    printed = [Prediction.model_validate_json(line) for line in result.stdout.splitlines()]
    written = list(read_records(out, Prediction))
    assert printed == written
    assert [p.sample_id for p in written] == [str(v) for v in sample_videos()]
    assert all(p.task is not None and p.task.startswith("critic:reason2_videophy2_critic@") for p in written)
    assert all(p.num_generated_tokens is not None and 1 <= p.num_generated_tokens <= 8 for p in written)

    checked = run(str(BIN / "cookbook-data"), "check-records", str(out), "--kind", "prediction")
    assert checked.returncode == 0, checked.stderr
    assert "2 valid prediction records" in checked.stdout


def test_generate_reports_a_broken_video_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    built = run(str(BIN / "cookbook-infer"), "make-tiny-model", "--arch", "reason1", str(tmp_path / "tiny"))
    result = run(str(BIN / "cookbook-infer"), "generate", "--model", built.stdout.strip(), str(broken))
    assert result.returncode == 1
    assert f"error: VideoDecodeError: {broken}: cannot open as video" in result.stderr
    assert "Traceback" not in result.stderr
